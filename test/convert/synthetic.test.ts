import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  hfTensorLayout,
  layoutParameterCount,
  type TensorSpec,
} from '../../src/convert/checkpoint-layout.js';
import { readSafetensorsHeader, SafetensorsCheckpoint } from '../../src/convert/safetensors.js';
import {
  bundledTokenizerDir,
  defaultPreprocessorConfig,
  InsufficientDiskSpaceError,
  syntheticTensor,
  syntheticTensorChunks,
  TINY_DEMO_CONFIG,
  TOKENIZER_FILES,
  writeSyntheticCheckpoint,
  writeTinyCheckpoint,
} from '../../src/convert/synthetic.js';
import { resolveBlip2Config } from '../../src/model/config.js';
import { portableLog, Rng } from '../../src/util/random.js';
import { HAS_SHARED, SHARED_DIR, SHARED_SKIP_REASON, TINY_FIXTURE_DIR } from '../helpers/shared.js';

const XL_DIR = join(SHARED_DIR, 'assets', 'hf-configs', 'Salesforce--blip2-flan-t5-xl');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'blip2-synthetic-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha256 = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

function stats(a: Float32Array): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const x of a) {
    s += x;
    s2 += x * x;
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(s2 / a.length - mean * mean) };
}

/** A mid-sized config that differs from the tiny one in every switch the layout has. */
const MEDIUM_CONFIG = {
  model_type: 'blip-2',
  num_query_tokens: 16,
  vision_config: { hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_hidden_layers: 3 },
  qformer_config: {
    hidden_size: 32,
    intermediate_size: 64,
    num_attention_heads: 4,
    num_hidden_layers: 3,
    encoder_hidden_size: 64,
  },
  text_config: {
    model_type: 't5',
    d_model: 48,
    d_kv: 16,
    num_heads: 4,
    d_ff: 96,
    num_layers: 3,
    num_decoder_layers: 2,
    feed_forward_proj: 'relu',
    tie_word_embeddings: false,
    vocab_size: 32128,
  },
};

describe('seeded PRNG', () => {
  it('gives the same sequence for the same seed, pinned so a change on any machine shows', () => {
    const r = new Rng(0);
    expect([r.nextUint32(), r.nextUint32(), r.nextUint32(), r.nextUint32()]).toEqual([
      553788676, 1546614924, 3904629206, 590343546,
    ]);
    const n = new Rng(42, 'query_tokens');
    expect([n.nextNormal(), n.nextNormal(), n.nextNormal(), n.nextNormal()]).toEqual([
      0.33171989332017393, 1.3634904237821859, 0.28401509616402115, -0.9882118059251659,
    ]);
    expect(new Rng(7).nextFloat()).toBe(new Rng(7).nextFloat());
    expect(new Rng(7).nextUint32()).not.toBe(new Rng(8).nextUint32());
    expect(new Rng(7, 'a').nextUint32()).not.toBe(new Rng(7, 'b').nextUint32());
    expect(new Rng(2 ** 40).nextUint32()).not.toBe(new Rng(0).nextUint32());
    expect(() => new Rng(0.5)).toThrow(RangeError);
  });

  it('fills the same values whatever the chunking, with mean 0 and variance 1', () => {
    const whole = new Rng(3).fillNormal(new Float32Array(100_001));
    const pieces = new Float32Array(100_001);
    const r = new Rng(3);
    for (const [a, b] of [
      [0, 1],
      [1, 4],
      [4, 50_000],
      [50_000, 50_001],
      [50_001, 100_001],
    ] as const) {
      r.fillNormal(pieces.subarray(a, b));
    }
    expect(Buffer.from(pieces.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
    const s = stats(whole);
    expect(Math.abs(s.mean)).toBeLessThan(0.01);
    expect(Math.abs(s.std - 1)).toBeLessThan(0.01);
    const u = new Rng(9);
    let sum = 0;
    for (let i = 0; i < 10_000; i++) {
      const x = u.nextFloat();
      expect(x >= 0 && x < 1).toBe(true);
      sum += x;
    }
    expect(Math.abs(sum / 10_000 - 0.5)).toBeLessThan(0.02);
  });

  it('computes its own logarithm to double precision', () => {
    for (const x of [1e-300, 2 ** -40, 1e-5, 0.3, 0.75, 1, 1.5, 10, 1e300]) {
      expect(Math.abs(portableLog(x) - Math.log(x))).toBeLessThanOrEqual(
        4e-15 * Math.max(1, Math.abs(Math.log(x))),
      );
    }
    expect(portableLog(0)).toBe(Number.NEGATIVE_INFINITY);
    expect(portableLog(-1)).toBeNaN();
  });
});

describe('HF tensor layout', () => {
  it('follows the config switches: gated FFN, tied embeddings, qkv bias, cross-attention frequency', () => {
    const names = (raw: Record<string, unknown>, includeOptional = false): Map<string, TensorSpec> =>
      new Map(hfTensorLayout(resolveBlip2Config(raw), { includeOptional }).map((s) => [s.name, s]));

    const medium = names(MEDIUM_CONFIG);
    expect(medium.has('language_model.encoder.block.2.layer.1.DenseReluDense.wi.weight')).toBe(true);
    expect(medium.has('language_model.encoder.block.2.layer.1.DenseReluDense.wi_0.weight')).toBe(false);
    expect(medium.get('language_model.decoder.block.1.layer.2.DenseReluDense.wo.weight')?.shape).toEqual([
      48, 96,
    ]);
    expect(medium.get('language_model.encoder.block.0.layer.0.SelfAttention.q.weight')?.shape).toEqual([
      64, 48,
    ]);
    expect(medium.get('language_model.encoder.block.0.layer.0.SelfAttention.o.weight')?.shape).toEqual([
      48, 64,
    ]);
    expect(
      medium.get('language_model.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'),
    ).toEqual({
      name: 'language_model.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight',
      shape: [32, 4],
      kind: 'relative_bias',
      used: true,
      optional: false,
    });
    expect(
      medium.has('language_model.decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight'),
    ).toBe(false);
    expect(
      medium.has('language_model.decoder.block.1.layer.1.EncDecAttention.relative_attention_bias.weight'),
    ).toBe(false);
    expect(medium.get('language_model.lm_head.weight')?.kind).toBe('lm_head');
    // Cross-attention on layers 0 and 2 (frequency 2), keys from the vision width.
    expect(medium.get('qformer.encoder.layer.0.crossattention.attention.key.weight')?.shape).toEqual([
      32, 64,
    ]);
    expect(medium.has('qformer.encoder.layer.1.crossattention.attention.key.weight')).toBe(false);
    expect(medium.has('qformer.encoder.layer.2.crossattention.output.LayerNorm.bias')).toBe(true);
    expect(medium.get('vision_model.encoder.layers.2.self_attn.qkv.bias')).toMatchObject({
      shape: [192],
      kind: 'qkv_bias',
    });
    expect(medium.get('vision_model.embeddings.position_embedding')?.shape).toEqual([1, 257, 64]);
    expect(medium.get('query_tokens')?.shape).toEqual([1, 16, 32]);
    expect([...medium.values()].every((s) => s.used && !s.optional)).toBe(true);

    const tied = names({
      ...MEDIUM_CONFIG,
      vision_config: { ...MEDIUM_CONFIG.vision_config, qkv_bias: false, image_size: 112, patch_size: 16 },
      qformer_config: { ...MEDIUM_CONFIG.qformer_config, cross_attention_frequency: 1 },
      text_config: {
        ...MEDIUM_CONFIG.text_config,
        feed_forward_proj: 'gated-gelu',
        tie_word_embeddings: true,
      },
    });
    expect(tied.has('language_model.lm_head.weight')).toBe(false);
    expect(tied.has('vision_model.encoder.layers.0.self_attn.qkv.bias')).toBe(false);
    expect(tied.get('vision_model.embeddings.patch_embedding.weight')?.shape).toEqual([64, 3, 16, 16]);
    expect(tied.get('vision_model.embeddings.position_embedding')?.shape).toEqual([1, 50, 64]);
    expect(tied.has('qformer.encoder.layer.1.crossattention.attention.query.weight')).toBe(true);
    expect(tied.get('language_model.decoder.block.1.layer.2.DenseReluDense.wi_1.weight')?.shape).toEqual([
      96, 48,
    ]);

    const all = names(MEDIUM_CONFIG, true);
    const optional = [...all.values()].filter((s) => s.optional);
    expect(optional.every((s) => !s.used)).toBe(true);
    expect(all.get('language_model.encoder.embed_tokens.weight')?.aliasOf).toBe(
      'language_model.shared.weight',
    );
    expect(all.get('qformer.encoder.layer.1.intermediate.dense.weight')?.shape).toEqual([64, 32]);
    expect(all.get('qformer.encoder.layer.1.output.LayerNorm.weight')?.kind).toBe('norm_weight');
    expect(all.has('qformer.embeddings.word_embeddings.weight')).toBe(true);
    expect(all.size - medium.size).toBe(optional.length);
  });

  describe.skipIf(!HAS_SHARED)(`against real data${HAS_SHARED ? '' : ` (${SHARED_SKIP_REASON})`}`, () => {
    it('matches tensors.derived.json for Salesforce/blip2-flan-t5-xl exactly', async () => {
      const config = resolveBlip2Config(JSON.parse(await readFile(join(XL_DIR, 'config.json'), 'utf8')));
      const derived = JSON.parse(await readFile(join(XL_DIR, 'tensors.derived.json'), 'utf8'));
      const layout = hfTensorLayout(config, { includeOptional: false });
      expect(layout).toHaveLength(1289);
      expect(Object.fromEntries(layout.map((s) => [s.name, s.shape]))).toEqual(derived.tensors);
      expect(layoutParameterCount(layout)).toBe(3_942_446_592);
      expect(derived.total_params).toBe(3_942_446_592);
    });

    it("matches the tiny fixture's model.safetensors header", async () => {
      const raw = JSON.parse(await readFile(join(TINY_FIXTURE_DIR, 'config.json'), 'utf8'));
      const layout = hfTensorLayout(resolveBlip2Config(raw));
      const header = await readSafetensorsHeader(join(TINY_FIXTURE_DIR, 'model.safetensors'));
      const inFile = new Map(header.tensors.map((t) => [t.name, t.shape]));
      const byName = new Map(layout.map((s) => [s.name, s]));
      for (const s of layout) {
        if (!s.optional) expect(inFile.get(s.name), s.name).toEqual(s.shape);
      }
      for (const [name, shape] of inFile) {
        expect(byName.get(name)?.shape, name).toEqual(shape);
      }
      // The fixture keeps the tied embed_tokens copies, the only optional tensors it has.
      const extra = [...inFile.keys()].filter((n) => byName.get(n)?.optional).sort();
      expect(extra).toEqual([
        'language_model.decoder.embed_tokens.weight',
        'language_model.encoder.embed_tokens.weight',
      ]);
      const golden = JSON.parse(await readFile(join(TINY_FIXTURE_DIR, 'golden.json'), 'utf8'));
      expect(layoutParameterCount(layout.filter((s) => !s.optional))).toBe(golden.num_parameters_unique);
    });

    it('TINY_DEMO_CONFIG resolves to the fixture family', async () => {
      const raw = JSON.parse(await readFile(join(TINY_FIXTURE_DIR, 'config.json'), 'utf8'));
      expect(resolveBlip2Config(TINY_DEMO_CONFIG)).toEqual(resolveBlip2Config(raw));
      expect(defaultPreprocessorConfig()).toEqual(
        JSON.parse(await readFile(join(TINY_FIXTURE_DIR, 'preprocessor_config.json'), 'utf8')),
      );
    });
  });
});

describe('synthetic checkpoints', () => {
  it('writes the tiny demo model fast, deterministically, with HF names and sane values', async () => {
    const a = join(tmp, 'tiny-a');
    const started = performance.now();
    const result = await writeTinyCheckpoint(a, 0);
    const ms = performance.now() - started;
    console.log(`tiny checkpoint: ${result.tensors} tensors, ${result.bytes} bytes in ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(3000);
    expect((await readdir(a)).sort()).toEqual(
      [
        'config.json',
        'model.safetensors',
        'preprocessor_config.json',
        'special_tokens_map.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    );
    expect(JSON.parse(await readFile(join(a, 'config.json'), 'utf8'))).toEqual(TINY_DEMO_CONFIG);
    expect(JSON.parse(await readFile(join(a, 'preprocessor_config.json'), 'utf8'))).toEqual(
      defaultPreprocessorConfig(224),
    );
    for (const f of TOKENIZER_FILES) {
      expect(await sha256(join(a, f))).toBe(await sha256(join(bundledTokenizerDir(), f)));
    }

    const b = join(tmp, 'tiny-b');
    const c = join(tmp, 'tiny-c');
    await writeTinyCheckpoint(b, 0);
    await writeTinyCheckpoint(c, 1);
    const hashA = await sha256(join(a, 'model.safetensors'));
    expect(await sha256(join(b, 'model.safetensors'))).toBe(hashA);
    expect(await sha256(join(c, 'model.safetensors'))).not.toBe(hashA);
    // Pinned: the demo model's bytes must not depend on the machine. Update only on purpose.
    expect(hashA).toBe('241782b2b91907174e19442196ef89c130cccbb92f97ddf6848189dbf2e6f757');

    const config = resolveBlip2Config(TINY_DEMO_CONFIG);
    const layout = hfTensorLayout(config, { includeOptional: false });
    expect(result.parameters).toBe(layoutParameterCount(layout));
    const ckpt = await SafetensorsCheckpoint.open(a);
    try {
      expect(ckpt.names()).toEqual(layout.map((s) => s.name));
      const values = new Map<string, Float32Array>();
      for (const s of layout) values.set(s.name, await ckpt.read(s.name, s.shape));
      expect(ckpt.unusedNames()).toEqual([]);
      const get = (n: string): Float32Array => values.get(n)!;

      const qkvBias = get('vision_model.encoder.layers.1.self_attn.qkv.bias');
      expect(qkvBias.subarray(48, 96).every((x) => x === 0)).toBe(true);
      expect(qkvBias.subarray(0, 48).some((x) => x !== 0)).toBe(true);
      expect(stats(get('vision_model.embeddings.position_embedding')).std).toBeCloseTo(1, 1);
      const norm = stats(get('qformer.layernorm.weight'));
      expect(norm.mean).toBeGreaterThan(0.9);
      expect(norm.mean).toBeLessThan(1.1);
      expect(norm.std).toBeLessThan(0.2);
      expect(stats(get('vision_model.encoder.layers.0.mlp.fc2.weight')).std).toBeCloseTo(
        1 / Math.sqrt(96),
        2,
      );
      expect(stats(get('vision_model.embeddings.patch_embedding.weight')).std).toBeCloseTo(
        1 / Math.sqrt(588),
        2,
      );
      const lmHead = get('language_model.lm_head.weight');
      expect(stats(lmHead).std).toBeCloseTo(4 / Math.sqrt(32), 1);
      const eosRow = stats(lmHead.subarray(32, 64)).std;
      const otherRows = stats(lmHead.subarray(64, 64 + 32 * 100)).std;
      expect(eosRow / otherRows).toBeGreaterThan(2);
      expect(stats(get('language_model.shared.weight')).std).toBeCloseTo(1, 1);
    } finally {
      await ckpt.close();
    }
  });

  it('yields the same values whatever the chunk size', () => {
    const spec: TensorSpec = {
      name: 'language_model.lm_head.weight',
      shape: [50, 8],
      kind: 'lm_head',
      used: true,
      optional: false,
    };
    const ctx = { dModel: 8, eosTokenId: 1 };
    const whole = syntheticTensor(spec, 5, ctx);
    const pieces: number[] = [];
    for (const chunk of syntheticTensorChunks(spec, 5, ctx, 7)) pieces.push(...chunk);
    expect(Float32Array.from(pieces)).toEqual(whole);
    const qkv: TensorSpec = { name: 'b', shape: [30], kind: 'qkv_bias', used: true, optional: false };
    const chunked: number[] = [];
    for (const chunk of syntheticTensorChunks(qkv, 5, ctx, 4)) chunked.push(...chunk);
    expect(chunked.slice(10, 20)).toEqual(new Array(10).fill(0));
    expect(Float32Array.from(chunked)).toEqual(syntheticTensor(qkv, 5, ctx));
  });

  it('streams a medium config with progress, optional tensors and aliased copies', async () => {
    const dir = join(tmp, 'medium');
    const progress: { index: number; bytesWritten: number; totalBytes: number }[] = [];
    const result = await writeSyntheticCheckpoint(dir, {
      config: MEDIUM_CONFIG,
      seed: 11,
      includeUnused: true,
      preprocessorConfig: { custom: true },
      onProgress: (p) => progress.push(p),
    });
    const layout = hfTensorLayout(resolveBlip2Config(MEDIUM_CONFIG));
    expect(result.tensors).toBe(layout.length);
    expect(progress.at(-1)).toMatchObject({ bytesWritten: result.bytes, totalBytes: result.bytes });
    expect(progress.map((p) => p.index)).toEqual([...progress.map((p) => p.index)].sort((x, y) => x - y));
    expect(JSON.parse(await readFile(join(dir, 'preprocessor_config.json'), 'utf8'))).toEqual({
      custom: true,
    });

    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      for (const s of layout) if (s.used) await ckpt.read(s.name, s.shape);
      expect(ckpt.unusedNames().sort()).toEqual(
        layout
          .filter((s) => !s.used)
          .map((s) => s.name)
          .sort(),
      );
      const shared = await ckpt.read('language_model.shared.weight');
      const copy = await ckpt.read('language_model.decoder.embed_tokens.weight');
      expect(Buffer.from(copy.buffer).equals(Buffer.from(shared.buffer))).toBe(true);
      const wi = await ckpt.read('language_model.encoder.block.2.layer.1.DenseReluDense.wi.weight', [96, 48]);
      expect(stats(wi).std).toBeCloseTo(1 / Math.sqrt(48), 2);
    } finally {
      await ckpt.close();
    }
  });

  it('checks free disk space first and writes nothing when it is short', async () => {
    const dir = join(tmp, 'absurd');
    const absurd = {
      ...MEDIUM_CONFIG,
      text_config: { ...MEDIUM_CONFIG.text_config, vocab_size: 100_000_000, d_model: 1_000_000 },
    };
    const err = await writeSyntheticCheckpoint(dir, { config: absurd, seed: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InsufficientDiskSpaceError);
    expect((err as InsufficientDiskSpaceError).neededBytes).toBeGreaterThan(8e14);
    expect((err as Error).message).toMatch(/not enough free disk space in .*absurd.*needs \d+ GB/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('rejects a config it cannot describe before writing anything', async () => {
    const dir = join(tmp, 'gpt2');
    await expect(
      writeSyntheticCheckpoint(dir, {
        config: { model_type: 'blip-2', text_config: { model_type: 'gpt2' } },
        seed: 0,
      }),
    ).rejects.toThrow(/unsupported language model "gpt2"/);
    await expect(readdir(dir)).rejects.toThrow(/ENOENT/);
  });
});
