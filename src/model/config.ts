/**
 * The BLIP-2 hyper-parameters the converter and the engine agree on, for both kinds of language model: FlanT5
 * (encoder-decoder) and OPT (decoder-only).
 *
 * HF's `save_pretrained` omits every value equal to the default sub-config, so a `config.json` alone is not
 * enough: `resolveBlip2Config` applies the same defaults transformers 4.40 does (Blip2VisionConfig,
 * Blip2QFormerConfig, T5Config, OPTConfig) and rejects what we cannot run.
 */
import { UserFacingError } from '../errors.js';

export interface VisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: string;
  qkvBias: boolean;
}

export interface QFormerConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  crossAttentionFrequency: number;
  encoderHiddenSize: number;
  layerNormEps: number;
  hiddenAct: string;
}

export type T5Activation = 'relu' | 'gelu' | 'gelu_new';

export interface T5Config {
  vocabSize: number;
  dModel: number;
  dKv: number;
  dFf: number;
  numLayers: number;
  numDecoderLayers: number;
  numHeads: number;
  relativeAttentionNumBuckets: number;
  relativeAttentionMaxDistance: number;
  layerNormEps: number;
  /** true for `gated-*` feed-forward: `wo(act(wi_0 x) * wi_1 x)`; false: `wo(act(wi x))`. */
  gatedFfn: boolean;
  activation: T5Activation;
  /** With tied embeddings HF scales the decoder output by d_model^-0.5 and uses `shared` as lm_head. */
  tieWordEmbeddings: boolean;
  padTokenId: number;
  eosTokenId: number;
  decoderStartTokenId: number;
}

/** `OPTForCausalLM` as BLIP-2 uses it: pre-LN blocks, learned positions with offset 2, ReLU FFN, tied lm_head. */
export interface OptConfig {
  vocabSize: number;
  hiddenSize: number;
  ffnDim: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  /** `max_position_embeddings`; the position table has 2 more rows (OPT's offset). */
  maxPositionEmbeddings: number;
  /** Fixed: torch's nn.LayerNorm default, OPT has no eps setting. */
  layerNormEps: number;
  /** lm_head is embed_tokens (HF's default); false: the checkpoint must hold `lm_head.weight`. */
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  /** Where generation stops: 50118 ("\n") in the BLIP-2 OPT configs. */
  eosTokenId: number;
  padTokenId: number;
}

export type LanguageModelKind = 't5' | 'opt';

interface Blip2Common {
  numQueryTokens: number;
  vision: VisionConfig;
  qformer: QFormerConfig;
}

export interface Blip2T5Config extends Blip2Common {
  languageModel: 't5';
  text: T5Config;
}

export interface Blip2OptConfig extends Blip2Common {
  languageModel: 'opt';
  text: OptConfig;
}

export type Blip2Config = Blip2T5Config | Blip2OptConfig;

/** Width of the language model's embeddings: what `language_projection` maps the Q-Former output to. */
export function languageModelWidth(config: Blip2Config): number {
  return config.languageModel === 'opt' ? config.text.hiddenSize : config.text.dModel;
}

/** The ids the decoding loop needs: generation starts after `decoderStartTokenId` (OPT: bos) and ends at eos. */
export function generationTokenIds(config: Blip2Config): {
  decoderStartTokenId: number;
  eosTokenId: number;
  padTokenId: number;
} {
  if (config.languageModel === 'opt') {
    const o = config.text;
    return { decoderStartTokenId: o.bosTokenId, eosTokenId: o.eosTokenId, padTokenId: o.padTokenId };
  }
  const t = config.text;
  return { decoderStartTokenId: t.decoderStartTokenId, eosTokenId: t.eosTokenId, padTokenId: t.padTokenId };
}

/** The T5 part of a config, for code that exists only for FlanT5 (its graphs, its checkpoint layout). */
export function t5Config(config: Blip2Config): T5Config {
  if (config.languageModel !== 't5') throw new ConfigError('expected a BLIP-2 FlanT5 config');
  return config.text;
}

export class ConfigError extends UserFacingError {
  override name = 'ConfigError';
  constructor(message: string) {
    super('model_config', message);
  }
}

type Json = Record<string, unknown>;

function obj(value: unknown, where: string): Json {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${where} must be an object`);
  return value as Json;
}

function num(src: Json, key: string, fallback: number, where: string): number {
  const v = src[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${where}.${key} must be a number`);
  return v;
}

function int(src: Json, key: string, fallback: number, where: string): number {
  const v = num(src, key, fallback, where);
  if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${where}.${key} must be a non-negative integer`);
  return v;
}

function str(src: Json, key: string, fallback: string): string {
  const v = src[key];
  return typeof v === 'string' ? v : fallback;
}

function bool(src: Json, key: string, fallback: boolean): boolean {
  const v = src[key];
  return typeof v === 'boolean' ? v : fallback;
}

function resolveT5(raw: Json): T5Config {
  const where = 'text_config';
  const proj = str(raw, 'feed_forward_proj', 'relu');
  const gated = proj.startsWith('gated-');
  const base = gated ? proj.slice('gated-'.length) : proj;
  if (base !== 'relu' && base !== 'gelu') {
    throw new ConfigError(
      `${where}.feed_forward_proj "${proj}" is not supported (relu, gelu, gated-relu, gated-gelu)`,
    );
  }
  // T5Config overrides dense_act_fn for "gated-gelu" with the tanh approximation, whatever config.json says.
  const activation: T5Activation = proj === 'gated-gelu' ? 'gelu_new' : base === 'gelu' ? 'gelu' : 'relu';
  const numLayers = int(raw, 'num_layers', 6, where);
  const padTokenId = int(raw, 'pad_token_id', 0, where);
  const numHeads = int(raw, 'num_heads', 8, where);
  const dKv = int(raw, 'd_kv', 64, where);
  const t5: T5Config = {
    vocabSize: int(raw, 'vocab_size', 32128, where),
    dModel: int(raw, 'd_model', 512, where),
    dKv,
    dFf: int(raw, 'd_ff', 2048, where),
    numLayers,
    numDecoderLayers: int(raw, 'num_decoder_layers', numLayers, where),
    numHeads,
    relativeAttentionNumBuckets: int(raw, 'relative_attention_num_buckets', 32, where),
    relativeAttentionMaxDistance: int(raw, 'relative_attention_max_distance', 128, where),
    layerNormEps: num(raw, 'layer_norm_epsilon', 1e-6, where),
    gatedFfn: gated,
    activation,
    tieWordEmbeddings: bool(raw, 'tie_word_embeddings', true),
    padTokenId,
    eosTokenId: int(raw, 'eos_token_id', 1, where),
    decoderStartTokenId: int(raw, 'decoder_start_token_id', padTokenId, where),
  };
  for (const key of [
    'vocabSize',
    'dModel',
    'dKv',
    'dFf',
    'numLayers',
    'numDecoderLayers',
    'numHeads',
  ] as const) {
    if (t5[key] === 0) throw new ConfigError(`${where}: ${key} must be positive`);
  }
  return t5;
}

/** OPTConfig's defaults (transformers 4.40) for what config.json omits; rejects the variants BLIP-2 never uses. */
function resolveOpt(raw: Json): OptConfig {
  const where = 'text_config';
  const hiddenSize = int(raw, 'hidden_size', 768, where);
  const numHeads = int(raw, 'num_attention_heads', 12, where);
  const opt: OptConfig = {
    vocabSize: int(raw, 'vocab_size', 50272, where),
    hiddenSize,
    ffnDim: int(raw, 'ffn_dim', 3072, where),
    numLayers: int(raw, 'num_hidden_layers', 12, where),
    numHeads,
    headDim: numHeads > 0 ? hiddenSize / numHeads : 0,
    maxPositionEmbeddings: int(raw, 'max_position_embeddings', 2048, where),
    layerNormEps: 1e-5,
    tieWordEmbeddings: bool(raw, 'tie_word_embeddings', true),
    bosTokenId: int(raw, 'bos_token_id', 2, where),
    eosTokenId: int(raw, 'eos_token_id', 2, where),
    padTokenId: int(raw, 'pad_token_id', 1, where),
  };
  for (const key of ['vocabSize', 'hiddenSize', 'ffnDim', 'numLayers', 'numHeads'] as const) {
    if (opt[key] === 0) throw new ConfigError(`${where}: ${key} must be positive`);
  }
  if (!Number.isInteger(opt.headDim))
    throw new ConfigError(`${where}: hidden_size must divide by num_attention_heads`);
  // opt-350m's variants (post-LN, a projected embedding, no final norm) are not BLIP-2 language models.
  const unsupported: [string, boolean][] = [
    ['do_layer_norm_before false (post-LN)', !bool(raw, 'do_layer_norm_before', true)],
    ['_remove_final_layer_norm', bool(raw, '_remove_final_layer_norm', false)],
    [
      'word_embed_proj_dim != hidden_size (project_in/out)',
      int(raw, 'word_embed_proj_dim', hiddenSize, where) !== hiddenSize,
    ],
    ['enable_bias false', !bool(raw, 'enable_bias', true)],
    ['layer_norm_elementwise_affine false', !bool(raw, 'layer_norm_elementwise_affine', true)],
    [
      `activation_function "${str(raw, 'activation_function', 'relu')}"`,
      str(raw, 'activation_function', 'relu') !== 'relu',
    ],
  ];
  for (const [what, bad] of unsupported) {
    if (bad)
      throw new ConfigError(`${where}: OPT with ${what} is not supported (BLIP-2's OPT models use none)`);
  }
  return opt;
}

/** Applies transformers' defaults to a parsed BLIP-2 `config.json` and checks that we can convert it. */
export function resolveBlip2Config(rawConfig: unknown): Blip2Config {
  const raw = obj(rawConfig, 'config.json');
  const modelType = raw.model_type;
  if (modelType !== 'blip-2') {
    throw new ConfigError(
      `config.json has model_type ${JSON.stringify(modelType ?? null)}; expected "blip-2" (a Blip2ForConditionalGeneration checkpoint)`,
    );
  }
  const v = obj(raw.vision_config, 'vision_config');
  const q = obj(raw.qformer_config, 'qformer_config');
  const textRaw = raw.text_config;
  // Blip2Config defaults text_config to OPT when it is absent.
  const text = obj(textRaw, 'text_config');
  const textType = str(text, 'model_type', 'opt');
  if (textType !== 't5' && textType !== 'opt') {
    throw new ConfigError(
      `unsupported language model "${textType}": blip2-bot converts BLIP-2 checkpoints with a FlanT5 (t5) or OPT language model`,
    );
  }
  const vision: VisionConfig = {
    hiddenSize: int(v, 'hidden_size', 1408, 'vision_config'),
    intermediateSize: int(v, 'intermediate_size', 6144, 'vision_config'),
    numLayers: int(v, 'num_hidden_layers', 39, 'vision_config'),
    numHeads: int(v, 'num_attention_heads', 16, 'vision_config'),
    imageSize: int(v, 'image_size', 224, 'vision_config'),
    patchSize: int(v, 'patch_size', 14, 'vision_config'),
    numChannels: int(v, 'num_channels', 3, 'vision_config'),
    layerNormEps: num(v, 'layer_norm_eps', 1e-6, 'vision_config'),
    hiddenAct: str(v, 'hidden_act', 'gelu'),
    qkvBias: bool(v, 'qkv_bias', true),
  };
  const qformer: QFormerConfig = {
    hiddenSize: int(q, 'hidden_size', 768, 'qformer_config'),
    intermediateSize: int(q, 'intermediate_size', 3072, 'qformer_config'),
    numLayers: int(q, 'num_hidden_layers', 12, 'qformer_config'),
    numHeads: int(q, 'num_attention_heads', 12, 'qformer_config'),
    crossAttentionFrequency: int(q, 'cross_attention_frequency', 2, 'qformer_config'),
    encoderHiddenSize: int(q, 'encoder_hidden_size', 1408, 'qformer_config'),
    layerNormEps: num(q, 'layer_norm_eps', 1e-12, 'qformer_config'),
    hiddenAct: str(q, 'hidden_act', 'gelu'),
  };
  const common = { numQueryTokens: int(raw, 'num_query_tokens', 32, 'config'), vision, qformer };
  const config: Blip2Config =
    textType === 'opt'
      ? { ...common, languageModel: 'opt', text: resolveOpt(text) }
      : { ...common, languageModel: 't5', text: resolveT5(text) };
  checkConsistency(config);
  return config;
}

function checkConsistency(c: Blip2Config): void {
  const { vision: v, qformer: q } = c;
  if (v.hiddenSize % v.numHeads !== 0)
    throw new ConfigError('vision hidden_size must divide by num_attention_heads');
  if (q.hiddenSize % q.numHeads !== 0)
    throw new ConfigError('qformer hidden_size must divide by num_attention_heads');
  if (v.imageSize % v.patchSize !== 0)
    throw new ConfigError('vision image_size must be a multiple of patch_size');
  if (q.encoderHiddenSize !== v.hiddenSize) {
    throw new ConfigError(
      `qformer encoder_hidden_size (${q.encoderHiddenSize}) differs from vision hidden_size (${v.hiddenSize})`,
    );
  }
  if (q.crossAttentionFrequency === 0)
    throw new ConfigError('qformer cross_attention_frequency must be positive');
  for (const act of [v.hiddenAct, q.hiddenAct]) {
    if (act !== 'gelu')
      throw new ConfigError(`activation "${act}" is not supported in vision/Q-Former (gelu)`);
  }
}

/** Number of image tokens the vision encoder emits: CLS + one per patch. */
export function visionSequenceLength(v: VisionConfig): number {
  const side = v.imageSize / v.patchSize;
  return 1 + side * side;
}
