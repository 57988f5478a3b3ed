/**
 * Item 20: the graph builders declare their inputs and outputs from `graphSignature` (src/model/graph-io.ts), the
 * description the engine checks sessions against. Every graph of both kinds, converted for real and loaded in
 * onnxruntime, has exactly its signature's names, element types and dims.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { GraphBuilder, TensorDataType } from '../../src/convert/onnx/graph-builder.js';
import { writeSyntheticCheckpoint, writeTinyCheckpoint } from '../../src/convert/synthetic.js';
import { createSession } from '../../src/engine/ort.js';
import { resolveBlip2Config } from '../../src/model/config.js';
import {
  GRAPH_FILES,
  type GraphSignature,
  type GraphTensorSpec,
  graphSignature,
  MANIFEST_FILE,
  MODEL_GRAPHS,
  type ModelManifest,
} from '../../src/model/graph-io.js';

/** A small OPT BLIP-2 config (as in test/convert/family-synthetic.test.ts). */
const SMALL_OPT_CONFIG = {
  model_type: 'blip-2',
  num_query_tokens: 4,
  vision_config: { hidden_size: 32, intermediate_size: 64, num_attention_heads: 2, num_hidden_layers: 1 },
  qformer_config: {
    hidden_size: 32,
    intermediate_size: 64,
    num_attention_heads: 2,
    num_hidden_layers: 1,
    encoder_hidden_size: 32,
  },
  text_config: {
    model_type: 'opt',
    hidden_size: 32,
    ffn_dim: 64,
    num_attention_heads: 2,
    num_hidden_layers: 2,
    max_position_embeddings: 64,
    eos_token_id: 50118,
    vocab_size: 50272,
  },
};

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'blip2-signature-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

type Described = Record<string, { type: string; dims: (number | string)[] }>;

const fromSpecs = (specs: GraphTensorSpec[]): Described =>
  Object.fromEntries(specs.map((s) => [s.name, { type: s.type, dims: s.dims }]));

const fromSession = (metadata: readonly InferenceSession.ValueMetadata[]): Described =>
  Object.fromEntries(
    metadata.map((m) => [
      m.name,
      m.isTensor ? { type: String(m.type), dims: [...m.shape] } : { type: 'not a tensor', dims: [] },
    ]),
  );

async function expectGraphsMatchSignatures(modelDir: string): Promise<void> {
  const manifest = JSON.parse(await readFile(join(modelDir, MANIFEST_FILE), 'utf8')) as ModelManifest;
  const config = resolveBlip2Config(manifest.source.config);
  const graphs = MODEL_GRAPHS[config.languageModel];
  expect(graphs.length).toBeGreaterThanOrEqual(3);
  for (const graph of graphs) {
    const signature: GraphSignature = graphSignature(graph, config);
    const session = await createSession(join(modelDir, GRAPH_FILES[graph]));
    try {
      expect(fromSession(session.inputMetadata), `${graph} inputs`).toEqual(fromSpecs(signature.inputs));
      expect(fromSession(session.outputMetadata), `${graph} outputs`).toEqual(fromSpecs(signature.outputs));
    } finally {
      await session.release();
    }
  }
}

describe('built graphs equal their signatures', () => {
  it('FlanT5: vision, qformer, encoder, cross K/V and decoder', async () => {
    const src = join(tmp, 't5-src');
    await writeTinyCheckpoint(src, 0);
    await convertCheckpoint(src, join(tmp, 't5'), { dtype: 'fp32' });
    await expectGraphsMatchSignatures(join(tmp, 't5'));
  });

  it('OPT: vision, qformer and the decoder', async () => {
    const src = join(tmp, 'opt-src');
    await writeSyntheticCheckpoint(src, { config: SMALL_OPT_CONFIG, seed: 1 });
    await convertCheckpoint(src, join(tmp, 'opt'), { dtype: 'fp32' });
    await expectGraphsMatchSignatures(join(tmp, 'opt'));
  });
});

describe('GraphBuilder with a signature', () => {
  const signature = graphSignature('vision', {
    vision: { hiddenSize: 8, numChannels: 3, imageSize: 28, patchSize: 14 },
    qformer: { hiddenSize: 6 },
    numQueryTokens: 2,
    text: { dModel: 4, dKv: 2, numHeads: 2, numDecoderLayers: 1, vocabSize: 10 },
  });

  it('takes dtype and dims from it, and refuses a graph missing one of its outputs or with an input it lacks', () => {
    const complete = new GraphBuilder('vision', join(tmp, 'complete.data'));
    complete.useSignature(signature);
    complete.signatureOutput('image_embeds', complete.signatureInput('pixel_values'));
    expect(complete.finish('ok').length).toBeGreaterThan(0);

    const incomplete = new GraphBuilder('vision', join(tmp, 'incomplete.data'));
    incomplete.useSignature(signature);
    incomplete.signatureInput('pixel_values');
    expect(() => incomplete.finish('no output')).toThrow(/graph vision never declares image_embeds/);

    const extra = new GraphBuilder('vision', join(tmp, 'extra.data'));
    extra.useSignature(signature);
    const pixels = extra.signatureInput('pixel_values');
    extra.input('mask', TensorDataType.INT64, ['B']);
    extra.signatureOutput('image_embeds', pixels);
    expect(() => extra.finish('extra input')).toThrow(/declares inputs its signature lacks: mask/);
    expect(() => extra.signatureInput('logits')).toThrow(/logits is not among the signature's inputs/);
  });
});
