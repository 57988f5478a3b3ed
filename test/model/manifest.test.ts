/** The model contract: manifest validation (item 19) and each graph's signature, checked at load (item 20). */
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import { Blip2Model } from '../../src/engine/model.js';
import { graphSignature, MODEL_FORMAT_VERSION, signatureMismatches } from '../../src/model/graph-io.js';
import { loadManifest, ManifestError, readManifest } from '../../src/model/manifest.js';

describe('model manifest and graph signatures', () => {
  let work: string;
  let demo: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'blip2-manifest-'));
    demo = await ensureDemoModel(join(work, 'demo'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function variant(name: string, edit: (manifest: Record<string, unknown>) => void): string {
    const dir = join(work, name);
    cpSync(demo, dir, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    edit(manifest);
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    return dir;
  }

  async function problemOf(dir: string): Promise<ManifestError> {
    const err = await loadManifest(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestError);
    return err as ManifestError;
  }

  it('accepts the converter output and says what is wrong with anything else', async () => {
    expect((await loadManifest(demo)).formatVersion).toBe(MODEL_FORMAT_VERSION);
    expect((await problemOf(join(work, 'nowhere'))).problem).toBe('missing');
    const future = variant('future', (m) => {
      m.formatVersion = MODEL_FORMAT_VERSION + 1;
    });
    const e = await problemOf(future);
    expect(e.problem).toBe('unsupported_version');
    expect(e.userMessage).toMatch(
      /format version 2, but this blip2-bot reads version 1; convert the model again/,
    );
    expect(await readManifest(future)).toBeUndefined();
    expect(
      (
        await problemOf(
          variant('unfinished', (m) => {
            m.complete = false;
          }),
        )
      ).problem,
    ).toBe('incomplete');
    const damaged = await problemOf(
      variant('damaged', (m) => void delete (m.graphs as Record<string, unknown>).decoder),
    );
    expect(damaged.userMessage).toMatch(/"graphs\.decoder\.file" is missing/);
    // The engine refuses it the same way, before loading any graph.
    await expect(Blip2Model.load(future)).rejects.toThrow(/format version 2/);
  });

  it('accepts the graphs of each kind of language model: an OPT manifest has vision, qformer and opt only', async () => {
    const opt = variant('opt-kind', (m) => {
      const graphs = m.graphs as Record<string, unknown>;
      m.languageModel = 'opt';
      m.dtype = 'auto';
      delete graphs.encoder;
      delete graphs.crossKv;
      delete graphs.decoder;
      graphs.opt = { file: 'opt_decoder.onnx', bytes: 1, weights: 'calibrated' };
    });
    expect((await loadManifest(opt)).languageModel).toBe('opt');
    const noOpt = await problemOf(
      variant('opt-missing', (m) => {
        m.languageModel = 'opt';
        delete (m.graphs as Record<string, unknown>).opt;
      }),
    );
    expect(noOpt.problem).toBe('invalid');
    expect(noOpt.userMessage).toMatch(/"graphs\.opt\.file" is missing/);
    const unknown = await problemOf(
      variant('llama', (m) => {
        m.languageModel = 'llama';
      }),
    );
    expect(unknown.userMessage).toMatch(/"languageModel" must be "t5" or "opt", not "llama"/);
  });

  it('describes the OPT graph and refuses graphs a kind does not have', () => {
    const config = {
      languageModel: 'opt' as const,
      vision: { hiddenSize: 8, numChannels: 3, imageSize: 28, patchSize: 14 },
      qformer: { hiddenSize: 6 },
      numQueryTokens: 3,
      text: { hiddenSize: 4, headDim: 2, numHeads: 2, numLayers: 2, vocabSize: 10 },
    };
    const opt = graphSignature('opt', config);
    expect(opt.inputs.map((i) => i.name)).toEqual([
      'query_embeds',
      'input_ids',
      'attention_mask',
      'num_logits',
      'past.0.key',
      'past.0.value',
      'past.1.key',
      'past.1.value',
    ]);
    expect(opt.outputs.map((o) => o.name)).toContain('logits');
    expect(graphSignature('qformer', config).outputs[1]!.dims).toEqual(['B', 3, 4]);
    expect(graphSignature('vision', config).outputs[0]!.dims).toEqual(['B', 5, 8]);
    expect(() => graphSignature('decoder', config)).toThrow(/an OPT model has no decoder graph/);
  });

  it('refuses at load a graph whose inputs and outputs are not the expected ones', async () => {
    const dir = join(work, 'swapped');
    cpSync(demo, dir, { recursive: true });
    // The vision encoder where the Q-Former should be: its data file is still there, so onnxruntime loads it.
    copyFileSync(join(dir, 'vision_encoder.onnx'), join(dir, 'qformer.onnx'));
    await expect(Blip2Model.load(dir)).rejects.toThrow(
      /qformer\.onnx does not have the inputs and outputs this blip2-bot expects \(no input image_embeds; unexpected input pixel_values; no output qformer_output, query_embeds; unexpected output image_embeds\)/,
    );
  });

  it('compares names and element types', () => {
    const config = {
      vision: { hiddenSize: 8, numChannels: 3, imageSize: 28, patchSize: 14 },
      qformer: { hiddenSize: 6 },
      numQueryTokens: 3,
      text: { dModel: 4, dKv: 2, numHeads: 2, numDecoderLayers: 2, vocabSize: 10 },
    };
    const decoder = graphSignature('decoder', config);
    expect(decoder.inputs).toHaveLength(3 + 4 * 2);
    // Decoders converted before batched decoding lack decoder_attention_mask: still valid (one request at a time).
    const older = decoder.inputs.map((i) => i.name).filter((n) => n !== 'decoder_attention_mask');
    const outputs = decoder.outputs.map((o) => o.name);
    expect(signatureMismatches(decoder, { inputNames: older, outputNames: outputs })).toEqual([]);
    expect(signatureMismatches(decoder, { inputNames: older.slice(1), outputNames: outputs })).toEqual([
      'no input decoder_input_ids',
    ]);
    expect(decoder.outputs.map((o) => o.name)).toEqual([
      'logits',
      'present.0.key',
      'present.0.value',
      'present.1.key',
      'present.1.value',
    ]);
    const encoder = graphSignature('encoder', config);
    const loaded = {
      inputNames: encoder.inputs.map((i) => i.name),
      outputNames: ['encoder_hidden_states'],
      inputTypes: new Map([['input_ids', 'int32']]),
    };
    expect(signatureMismatches(encoder, loaded)).toEqual(['input input_ids is int32, not int64']);
    expect(signatureMismatches(encoder, { ...loaded, inputTypes: new Map() })).toEqual([]);
  });
});
