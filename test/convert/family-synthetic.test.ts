/**
 * The rest of the BLIP-2 family through the synthetic-checkpoint writer and the real converter: OPT-2.7b's
 * tensor list, a tiny synthetic OPT end to end, and FlanT5-XXL's geometry (d_model 4096, 64 heads of 64, d_ff
 * 10240) at depth 1.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hfTensorLayout, layoutParameterCount } from '../../src/convert/checkpoint-layout.js';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { readSafetensorsHeader } from '../../src/convert/safetensors.js';
import { OPT_TOKENIZER_FILES, writeSyntheticCheckpoint } from '../../src/convert/synthetic.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import { resolveBlip2Config } from '../../src/model/config.js';
import { GRAPH_FILES } from '../../src/model/graph-io.js';
import { HAS_SHARED, SHARED_DIR, SHARED_SKIP_REASON } from '../helpers/shared.js';

const CONFIGS = join(SHARED_DIR, 'assets', 'hf-configs');
const OPT_27B_DIR = join(CONFIGS, 'Salesforce--blip2-opt-2.7b');
const XXL_DIR = join(CONFIGS, 'Salesforce--blip2-flan-t5-xxl');
const HAS_CONFIGS = HAS_SHARED && existsSync(join(OPT_27B_DIR, 'tensors.derived.json'));

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'blip2-family-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const readJson = async (path: string) => JSON.parse(await readFile(path, 'utf8'));
const pixels = () => ({
  pixelValues: {
    data: new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i / 7)),
    dims: [1, 3, 224, 224],
  },
});

/** A small OPT BLIP-2 config: every OPT default left to the resolver. */
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

describe('synthetic OPT checkpoints', () => {
  it('write, convert and answer end to end, with the bundled GPT-2 tokenizer files', async () => {
    const src = join(tmp, 'opt-src');
    const result = await writeSyntheticCheckpoint(src, { config: SMALL_OPT_CONFIG, seed: 3, dtype: 'BF16' });
    for (const f of OPT_TOKENIZER_FILES) expect(existsSync(join(src, f)), f).toBe(true);
    const header = await readSafetensorsHeader(join(src, 'model.safetensors'));
    expect(new Set(header.tensors.map((t) => t.dtype))).toEqual(new Set(['BF16']));
    expect(header.tensors.map((t) => t.name)).not.toContain('language_model.lm_head.weight');
    expect(result.parameters).toBe(
      layoutParameterCount(hfTensorLayout(resolveBlip2Config(SMALL_OPT_CONFIG), { includeOptional: false })),
    );

    const out = join(tmp, 'opt-model');
    await convertCheckpoint(src, out, { dtype: 'mixed' });
    const manifest = await readJson(join(out, 'manifest.json'));
    expect(manifest.languageModel).toBe('opt');
    expect(Object.keys(manifest.graphs)).toEqual(['vision', 'qformer', 'opt']);
    expect(existsSync(join(out, GRAPH_FILES.encoder))).toBe(false);

    const engine = await Blip2Engine.load(out, { store: { kind: 'memory' } });
    try {
      const r = await engine.generate({
        image: pixels(),
        question: 'what is it?',
        options: { numBeams: 3, maxNewTokens: 5 },
      });
      expect(r.ids.length).toBeGreaterThan(0);
      expect(r.ids.length).toBeLessThanOrEqual(5);
      expect(r.ids.every((id) => id >= 0 && id < 50272)).toBe(true);
      expect(engine.model.runs.opt).toBeGreaterThanOrEqual(1);
    } finally {
      await engine.close();
    }
  });
});

describe.skipIf(!HAS_CONFIGS)(
  `the real family configs${HAS_CONFIGS ? '' : ` (${SHARED_SKIP_REASON})`}`,
  () => {
    it('the OPT-2.7b layout matches tensors.derived.json exactly', async () => {
      const config = resolveBlip2Config(await readJson(join(OPT_27B_DIR, 'config.json')));
      expect(config.languageModel).toBe('opt');
      const derived = await readJson(join(OPT_27B_DIR, 'tensors.derived.json'));
      const layout = hfTensorLayout(config, { includeOptional: false });
      expect(layout).toHaveLength(1247);
      expect(Object.fromEntries(layout.map((s) => [s.name, s.shape]))).toEqual(derived.tensors);
      expect(layoutParameterCount(layout)).toBe(derived.total_params);
      expect(derived.total_params).toBe(3_744_761_856);
      // The tied lm_head HF leaves out is an optional alias of embed_tokens.
      const all = hfTensorLayout(config);
      expect(all.find((s) => s.name === 'language_model.lm_head.weight')?.aliasOf).toBe(
        'language_model.model.decoder.embed_tokens.weight',
      );
    });

    it('the OPT-2.7b config resolves with HF 4.40 defaults', async () => {
      const config = resolveBlip2Config(await readJson(join(OPT_27B_DIR, 'config.json')));
      const resolved = (await readJson(join(OPT_27B_DIR, 'config.resolved.json'))).config_full.text_config;
      expect(config.text).toMatchObject({
        vocabSize: resolved.vocab_size,
        hiddenSize: resolved.hidden_size,
        ffnDim: resolved.ffn_dim,
        numLayers: resolved.num_hidden_layers,
        numHeads: resolved.num_attention_heads,
        headDim: 80,
        maxPositionEmbeddings: resolved.max_position_embeddings,
        layerNormEps: 1e-5,
        tieWordEmbeddings: true,
        bosTokenId: resolved.bos_token_id,
        eosTokenId: 50118,
        padTokenId: resolved.pad_token_id,
      });
    });

    // XXL's widths are what differ from XL (64 heads of 64 = d_model, d_ff 10240); depth 1 keeps it to ~0.5 B
    // weights, written in bf16. The vocabulary is cut to 2048 rows (ids are fed directly), the one other change.
    it('FlanT5-XXL geometry at depth 1 converts (mixed) and generates', async () => {
      const raw = await readJson(join(XXL_DIR, 'config.json'));
      raw.vision_config.num_hidden_layers = 1;
      raw.qformer_config.num_hidden_layers = 1;
      raw.text_config.num_layers = 1;
      raw.text_config.num_decoder_layers = 1;
      raw.text_config.vocab_size = 2048;
      const config = resolveBlip2Config(raw);
      expect(config.text).toMatchObject({ dModel: 4096, numHeads: 64, dKv: 64, dFf: 10240, gatedFfn: true });

      const src = join(tmp, 'xxl-src');
      await writeSyntheticCheckpoint(src, { config: raw, seed: 5, dtype: 'BF16' });
      const out = join(tmp, 'xxl-model');
      await convertCheckpoint(src, out, { dtype: 'mixed' });
      await rm(src, { recursive: true, force: true });

      const engine = await Blip2Engine.load(out, { store: { kind: 'memory' } });
      try {
        const embeds = await engine.model.queryEncode(await engine.model.visionEncode(pixels().pixelValues));
        expect(embeds.queryEmbeds.dims).toEqual([1, 32, 4096]);
        const state = await engine.model.encode(embeds.queryEmbeds, [100, 200, 1]);
        if (state.kind !== 't5') throw new Error('expected a FlanT5 state');
        expect(state.cross[0]!.dims).toEqual([1, 64, 35, 64]);
        const r = await engine.generate({
          image: pixels(),
          inputIds: [100, 200, 1],
          options: { numBeams: 2, maxNewTokens: 3, minNewTokens: 3 },
        });
        expect(r.ids).toHaveLength(3);
        expect(r.ids.every((id) => id >= 0 && id < 2048)).toBe(true);
      } finally {
        await engine.close();
      }
    }, 600_000);
  },
);
