import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  generationTokenIds,
  languageModelWidth,
  resolveBlip2Config,
} from '../../src/model/config.js';

/** What `save_pretrained` writes for a BLIP-2 OPT model: only the values that differ from OPTConfig's defaults. */
const SPARSE = {
  model_type: 'blip-2',
  num_query_tokens: 8,
  vision_config: { hidden_size: 48, intermediate_size: 96, num_attention_heads: 4, num_hidden_layers: 2 },
  qformer_config: {
    hidden_size: 32,
    intermediate_size: 64,
    num_attention_heads: 4,
    num_hidden_layers: 2,
    encoder_hidden_size: 48,
  },
  text_config: {
    model_type: 'opt',
    hidden_size: 64,
    ffn_dim: 128,
    num_attention_heads: 4,
    num_hidden_layers: 2,
    eos_token_id: 50118,
    vocab_size: 50304,
  },
};

const withText = (text: Record<string, unknown>) => ({
  ...SPARSE,
  text_config: { ...SPARSE.text_config, ...text },
});

describe('OPT config resolution (HF 4.40 OPTConfig defaults)', () => {
  it('fills in what config.json omits; LayerNorm eps is always 1e-5', () => {
    const c = resolveBlip2Config(withText({ layer_norm_eps: 1e-12 }));
    if (c.languageModel !== 'opt') throw new Error('expected OPT');
    expect(c.text).toEqual({
      vocabSize: 50304,
      hiddenSize: 64,
      ffnDim: 128,
      numLayers: 2,
      numHeads: 4,
      headDim: 16,
      maxPositionEmbeddings: 2048,
      layerNormEps: 1e-5,
      tieWordEmbeddings: true,
      bosTokenId: 2,
      eosTokenId: 50118,
      padTokenId: 1,
    });
    expect(languageModelWidth(c)).toBe(64);
    expect(generationTokenIds(c)).toEqual({ decoderStartTokenId: 2, eosTokenId: 50118, padTokenId: 1 });
  });

  it('defaults text_config to OPT as Blip2Config does, with OPTConfig sizes', () => {
    const c = resolveBlip2Config({ ...SPARSE, text_config: {} });
    expect(c.languageModel).toBe('opt');
    expect(c.text).toMatchObject({ vocabSize: 50272, hiddenSize: 768, numLayers: 12, eosTokenId: 2 });
  });

  it('refuses the OPT variants BLIP-2 never uses, saying which', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ do_layer_norm_before: false }, /post-LN/],
      [{ word_embed_proj_dim: 32 }, /project_in/],
      [{ activation_function: 'gelu' }, /activation_function "gelu"/],
      [{ enable_bias: false }, /enable_bias/],
      [{ num_attention_heads: 5 }, /divide/],
    ];
    for (const [text, message] of cases) {
      expect(() => resolveBlip2Config(withText(text))).toThrow(ConfigError);
      expect(() => resolveBlip2Config(withText(text))).toThrow(message);
    }
    expect(() => resolveBlip2Config({ ...SPARSE, text_config: { model_type: 'llama' } })).toThrow(
      /unsupported language model "llama"/,
    );
  });
});
