import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { relativePositionTable } from '../../src/convert/graphs/relative-position.js';
import { type LoadedTensor, readSafetensorsFile } from '../../src/convert/safetensors.js';
import { createSession, ort } from '../../src/engine/ort.js';
import type { WeightDtype } from '../../src/model/graph-io.js';
import { HAS_SHARED, SHARED_SKIP_REASON, TINY_FIXTURE_DIR } from '../helpers/shared.js';
import { compare } from '../helpers/tensors.js';

/** The prompt golden.json used: "Question: what is in the picture? Answer:" + </s>. */
const PROMPT_IDS = [11860, 10, 125, 19, 16, 8, 1554, 58, 11801, 10, 1];
const QUERY_TOKENS = 8;
const TOLERANCE = 1e-4;

type Outputs = Record<string, Float32Array>;

async function runAll(modelDir: string, pixels: LoadedTensor): Promise<Outputs> {
  const open = (f: string) => createSession(join(modelDir, f));
  const [vision, qformer, encoder, crossKv, decoder] = await Promise.all(
    ['vision_encoder.onnx', 'qformer.onnx', 't5_encoder.onnx', 't5_cross_kv.onnx', 't5_decoder.onnx'].map(
      open,
    ),
  );
  const ids = new ort.Tensor('int64', BigInt64Array.from(PROMPT_IDS.map(BigInt)), [1, PROMPT_IDS.length]);
  const E = QUERY_TOKENS + PROMPT_IDS.length;
  const mask = new ort.Tensor('int64', new BigInt64Array(E).fill(1n), [1, E]);
  const v = await vision!.run({
    pixel_values: new ort.Tensor('float32', pixels.data as Float32Array, pixels.shape),
  });
  const q = await qformer!.run({ image_embeds: v.image_embeds! });
  const e = await encoder!.run({ query_embeds: q.query_embeds!, input_ids: ids, attention_mask: mask });
  const kv = await crossKv!.run({ encoder_hidden_states: e.encoder_hidden_states! });
  const feeds: Record<string, ort.Tensor> = {
    decoder_input_ids: new ort.Tensor('int64', BigInt64Array.from([0n]), [1, 1]),
    encoder_attention_mask: mask,
    decoder_attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n]), [1, 1]),
  };
  for (let l = 0; l < 2; l++) {
    for (const kind of ['key', 'value']) {
      feeds[`past.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8]);
      feeds[`cross.${l}.${kind}`] = kv[`cross.${l}.${kind}`]!;
    }
  }
  const d = await decoder!.run(feeds);
  const textOnly = await encoder!.run({
    query_embeds: new ort.Tensor('float32', new Float32Array(0), [1, 0, 32]),
    input_ids: ids,
    attention_mask: new ort.Tensor('int64', new BigInt64Array(PROMPT_IDS.length).fill(1n), [
      1,
      PROMPT_IDS.length,
    ]),
  });
  for (const s of [vision, qformer, encoder, crossKv, decoder]) await s!.release();
  return {
    'vision.last_hidden_state': v.image_embeds!.data as Float32Array,
    'qformer.last_hidden_state': q.qformer_output!.data as Float32Array,
    language_projection: q.query_embeds!.data as Float32Array,
    't5.encoder.last_hidden_state': e.encoder_hidden_states!.data as Float32Array,
    't5.logits.step0': d.logits!.data as Float32Array,
    't5.encoder_text_only': textOnly.encoder_hidden_states!.data as Float32Array,
  };
}

describe.skipIf(!HAS_SHARED)('converter parity with Hugging Face on blip2-tiny', () => {
  // Created in beforeAll, not here: a skipped suite's body still runs, its afterAll does not.
  let work: string;
  const models: Partial<Record<WeightDtype, string>> = {};
  let golden: Map<string, LoadedTensor>;
  const outputs: Partial<Record<WeightDtype, Outputs[]>> = {};

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'blip2-parity-'));
    golden = await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'golden.safetensors'));
    for (const dtype of ['fp32', 'int8', 'int4', 'mixed'] as const) {
      models[dtype] = join(work, dtype);
      await convertCheckpoint(TINY_FIXTURE_DIR, models[dtype]!, { dtype });
      outputs[dtype] = [];
      for (let i = 0; i < 3; i++)
        outputs[dtype]!.push(await runAll(models[dtype]!, golden.get(`pixel_values.${i}`)!));
    }
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const perImage = [
    'vision.last_hidden_state',
    'qformer.last_hidden_state',
    'language_projection',
    't5.encoder.last_hidden_state',
    't5.logits.step0',
  ];

  it('fp32 matches every golden tensor within 1e-4 × max(1, max|golden|)', () => {
    for (let i = 0; i < 3; i++) {
      for (const name of perImage) {
        const diff = compare(outputs.fp32![i]![name]!, golden.get(`${name}.${i}`)!.data as Float32Array);
        expect(diff.scaled, `${name}.${i}: max abs ${diff.maxAbs}`).toBeLessThanOrEqual(TOLERANCE);
      }
    }
    const textOnly = compare(
      outputs.fp32![0]!['t5.encoder_text_only']!,
      golden.get('t5.encoder_text_only')!.data as Float32Array,
    );
    expect(textOnly.scaled).toBeLessThanOrEqual(TOLERANCE);
  });

  it('relative-position bucket tables equal HF for relative positions −300…300', () => {
    for (const [stack, bidirectional] of [
      ['encoder', true],
      ['decoder', false],
    ] as const) {
      const table = relativePositionTable(bidirectional, 32, 128);
      const expected = Array.from(
        golden.get(`t5.${stack}.relative_position_bucket.rel_m300_p300`)!.data as BigInt64Array,
        Number,
      );
      const ours = expected.map((_, k) => table[Math.max(-128, Math.min(128, k - 300)) + 128]);
      expect(ours).toEqual(expected);
    }
  });

  // Random Gaussian weights are the hardest case for block quantisation: real checkpoints do better. The bounds
  // are set below what we measure so a broken packing (cosine near 0) fails loudly, not at a hair's breadth.
  for (const [dtype, minCosine] of [
    ['int8', 0.999],
    ['int4', 0.9],
    ['mixed', 0.9],
  ] as const) {
    it(`${dtype} outputs stay close to fp32 (cosine ≥ ${minCosine})`, () => {
      const rows: string[] = [];
      for (let i = 0; i < 3; i++) {
        for (const name of perImage) {
          const diff = compare(outputs[dtype]![i]![name]!, outputs.fp32![i]![name]!);
          rows.push(
            `${dtype} ${name}.${i}: cosine ${diff.cosine.toFixed(5)}, max abs ${diff.maxAbs.toExponential(2)}`,
          );
          expect(diff.cosine, `${name}.${i}`).toBeGreaterThanOrEqual(minCosine);
        }
      }
      console.log(rows.join('\n'));
    });
  }
});

if (!HAS_SHARED) console.warn(`[parity] ${SHARED_SKIP_REASON}`);
