/**
 * The one description of the converted graphs' files, inputs and outputs. The converter builds exactly these
 * names and the engine feeds exactly these, so a change here changes both sides at once.
 *
 * Symbolic dims: B batch (beams), S image tokens, Q query tokens (may be 0), L prompt tokens, E = Q + L encoder
 * positions, P past decoder positions, T new decoder positions (1 per step).
 */

export const MODEL_FORMAT = 'blip2-bot-onnx';
export const MODEL_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

export const GRAPH_FILES = {
  vision: 'vision_encoder.onnx',
  qformer: 'qformer.onnx',
  encoder: 't5_encoder.onnx',
  crossKv: 't5_cross_kv.onnx',
  decoder: 't5_decoder.onnx',
} as const;

export type GraphName = keyof typeof GRAPH_FILES;

export const VISION_IO = {
  /** float32 [B, 3, H, W], normalised as preprocessor_config.json says. */
  pixelValues: 'pixel_values',
  /** float32 [B, S, Dv]: HF `vision_model(...).last_hidden_state` (post-layernorm). */
  imageEmbeds: 'image_embeds',
} as const;

export const QFORMER_IO = {
  /** float32 [B, S, Dv] */
  imageEmbeds: 'image_embeds',
  /** float32 [B, Q, Hq]: HF `qformer(...).last_hidden_state`. */
  qformerOutput: 'qformer_output',
  /** float32 [B, Q, d_model]: `language_projection(qformer_output)`, the T5-space query embeddings. */
  queryEmbeds: 'query_embeds',
} as const;

export const ENCODER_IO = {
  /** float32 [B, Q, d_model]; Q may be 0 for a text-only prompt. */
  queryEmbeds: 'query_embeds',
  /** int64 [B, L]: prompt ids, `</s>` included; embedded inside the graph. */
  inputIds: 'input_ids',
  /** int64 [B, E]: 1 = attend, over query positions then prompt positions. */
  attentionMask: 'attention_mask',
  /** float32 [B, E, d_model]: after final_layer_norm. */
  hiddenStates: 'encoder_hidden_states',
} as const;

/** Cross-attention keys/values, computed once per request from the encoder output. */
export const CROSS_KV_IO = {
  /** float32 [B, E, d_model] */
  hiddenStates: 'encoder_hidden_states',
  /** float32 [B, heads, E, d_kv] per decoder layer. */
  key: (layer: number) => `cross.${layer}.key`,
  value: (layer: number) => `cross.${layer}.value`,
} as const;

export const DECODER_IO = {
  /** int64 [B, T] */
  inputIds: 'decoder_input_ids',
  /** int64 [B, E]: the encoder's attention mask. */
  encoderAttentionMask: 'encoder_attention_mask',
  /** float32 [B, heads, P, d_kv] per layer; P = 0 on the first step. */
  pastKey: (layer: number) => `past.${layer}.key`,
  pastValue: (layer: number) => `past.${layer}.value`,
  /** float32 [B, heads, E, d_kv] per layer, from the cross-KV graph. */
  crossKey: (layer: number) => `cross.${layer}.key`,
  crossValue: (layer: number) => `cross.${layer}.value`,
  /** float32 [B, T, vocab] */
  logits: 'logits',
  /** float32 [B, heads, P + T, d_kv] per layer: feed back as past on the next step. */
  presentKey: (layer: number) => `present.${layer}.key`,
  presentValue: (layer: number) => `present.${layer}.value`,
} as const;

/** What `convert --dtype` takes: one format for every graph, or `mixed` (fastest per graph on CPU). */
export type WeightDtype = 'fp32' | 'int8' | 'int4' | 'mixed';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['fp32', 'int8', 'int4', 'mixed'];

/**
 * How one graph stores its large MatMul weights: float32; MatMulNBits with 8- or 4-bit block-quantised weights;
 * or DynamicQuantizeMatMul with per-channel int8 weights and activations quantised on the fly (the fastest
 * kernel for many-row, compute-bound MatMuls).
 */
export type WeightFormat = 'fp32' | 'int8' | 'int4' | 'int8-dynamic';

const UNIFORM = (f: WeightFormat): Record<GraphName, WeightFormat> => ({
  vision: f,
  qformer: f,
  encoder: f,
  crossKv: f,
  decoder: f,
});

/**
 * Per-graph weight format of each `--dtype`. `mixed`: per-channel int8 for the vision encoder and Q-Former, whose
 * 257-row MatMuls are compute-bound and run fastest through DynamicQuantizeMatMul; int4 for the T5 stacks, where
 * few rows make the weights' size the cost (and int4 is as fast as int8 there, at half the memory).
 */
export const DTYPE_FORMATS: Record<WeightDtype, Record<GraphName, WeightFormat>> = {
  fp32: UNIFORM('fp32'),
  int8: UNIFORM('int8'),
  int4: UNIFORM('int4'),
  mixed: {
    vision: 'int8-dynamic',
    qformer: 'int8-dynamic',
    encoder: 'int4',
    crossKv: 'int4',
    decoder: 'int4',
  },
};

/** What `convert` writes last into a model dir; its presence with `complete: true` marks a finished model. */
export interface ModelManifest {
  format: typeof MODEL_FORMAT;
  formatVersion: number;
  complete: true;
  createdAt: string;
  converterVersion: string;
  /** Stable id of this converted model, part of the image-cache key. */
  modelId: string;
  dtype: WeightDtype;
  quantization?: { blockSize: number; accuracyLevel: number };
  /** True for the seeded random demo model: its answers are meaningless. */
  demo: boolean;
  source: {
    dir: string;
    /** sha256 over the source config.json and the safetensors headers and sizes. */
    checksum: string;
    config: unknown;
  };
  graphs: Record<GraphName, { file: string; dataFile?: string; bytes: number; weights: WeightFormat }>;
  tokenizerFiles: string[];
  preprocessorConfig?: unknown;
  stats: { tensors: number; parameters: number; bytesWritten: number; seconds: number };
}

// ---------------------------------------------------------------------------------------------------------------
// Signatures: every input and output of each graph with its dtype and dims, for the engine's check at load.

export type GraphTensorType = 'float32' | 'int64';

/** One graph input or output: a number is a fixed dim, a string a symbolic one (see the letters above). */
export interface GraphTensorSpec {
  name: string;
  type: GraphTensorType;
  dims: (number | string)[];
}

export interface GraphSignature {
  inputs: GraphTensorSpec[];
  outputs: GraphTensorSpec[];
}

/** The dims a signature needs from the resolved config (a structural subset of Blip2Config). */
export interface SignatureConfig {
  vision: { hiddenSize: number };
  qformer: { hiddenSize: number };
  text: { dModel: number; dKv: number; numHeads: number; numDecoderLayers: number; vocabSize: number };
}

const f32 = (name: string, dims: (number | string)[]): GraphTensorSpec => ({ name, type: 'float32', dims });
const i64 = (name: string, dims: (number | string)[]): GraphTensorSpec => ({ name, type: 'int64', dims });

function perLayer(layers: number, make: (layer: number) => GraphTensorSpec[]): GraphTensorSpec[] {
  return Array.from({ length: layers }, (_, i) => make(i)).flat();
}

/** What the converter of this version writes for `graph` of a model with `config`. */
export function graphSignature(graph: GraphName, config: SignatureConfig): GraphSignature {
  const { vision, qformer, text: t } = config;
  switch (graph) {
    case 'vision':
      return {
        inputs: [f32(VISION_IO.pixelValues, ['B', 3, 'H', 'W'])],
        outputs: [f32(VISION_IO.imageEmbeds, ['B', 'S', vision.hiddenSize])],
      };
    case 'qformer':
      return {
        inputs: [f32(QFORMER_IO.imageEmbeds, ['B', 'S', vision.hiddenSize])],
        outputs: [
          f32(QFORMER_IO.qformerOutput, ['B', 'Q', qformer.hiddenSize]),
          f32(QFORMER_IO.queryEmbeds, ['B', 'Q', t.dModel]),
        ],
      };
    case 'encoder':
      return {
        inputs: [
          f32(ENCODER_IO.queryEmbeds, ['B', 'Q', t.dModel]),
          i64(ENCODER_IO.inputIds, ['B', 'L']),
          i64(ENCODER_IO.attentionMask, ['B', 'E']),
        ],
        outputs: [f32(ENCODER_IO.hiddenStates, ['B', 'E', t.dModel])],
      };
    case 'crossKv':
      return {
        inputs: [f32(CROSS_KV_IO.hiddenStates, ['B', 'E', t.dModel])],
        outputs: perLayer(t.numDecoderLayers, (i) => [
          f32(CROSS_KV_IO.key(i), ['B', t.numHeads, 'E', t.dKv]),
          f32(CROSS_KV_IO.value(i), ['B', t.numHeads, 'E', t.dKv]),
        ]),
      };
    case 'decoder':
      return {
        inputs: [
          i64(DECODER_IO.inputIds, ['B', 'T']),
          i64(DECODER_IO.encoderAttentionMask, ['B', 'E']),
          ...perLayer(t.numDecoderLayers, (i) => [
            f32(DECODER_IO.pastKey(i), ['B', t.numHeads, 'P', t.dKv]),
            f32(DECODER_IO.pastValue(i), ['B', t.numHeads, 'P', t.dKv]),
            f32(DECODER_IO.crossKey(i), ['B', t.numHeads, 'E', t.dKv]),
            f32(DECODER_IO.crossValue(i), ['B', t.numHeads, 'E', t.dKv]),
          ]),
        ],
        outputs: [
          f32(DECODER_IO.logits, ['B', 'T', t.vocabSize]),
          ...perLayer(t.numDecoderLayers, (i) => [
            f32(DECODER_IO.presentKey(i), ['B', t.numHeads, 'P+T', t.dKv]),
            f32(DECODER_IO.presentValue(i), ['B', t.numHeads, 'P+T', t.dKv]),
          ]),
        ],
      };
  }
}

/** What a loaded graph offers, as onnxruntime reports it (names; types where it knows them). */
export interface LoadedGraphIO {
  inputNames: readonly string[];
  outputNames: readonly string[];
  inputTypes?: ReadonlyMap<string, string>;
  outputTypes?: ReadonlyMap<string, string>;
}

/** Differences between a loaded graph and its signature, one sentence each; empty when they match. */
export function signatureMismatches(expected: GraphSignature, loaded: LoadedGraphIO): string[] {
  const problems: string[] = [];
  const check = (
    kind: 'input' | 'output',
    specs: GraphTensorSpec[],
    names: readonly string[],
    types?: ReadonlyMap<string, string>,
  ) => {
    const have = new Set(names);
    const want = new Set(specs.map((s) => s.name));
    const missing = specs.filter((s) => !have.has(s.name)).map((s) => s.name);
    const extra = names.filter((n) => !want.has(n));
    if (missing.length > 0)
      problems.push(`no ${kind} ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}`);
    if (extra.length > 0)
      problems.push(`unexpected ${kind} ${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ', …' : ''}`);
    for (const spec of specs) {
      const type = types?.get(spec.name);
      if (type !== undefined && type !== spec.type)
        problems.push(`${kind} ${spec.name} is ${type}, not ${spec.type}`);
    }
  };
  check('input', expected.inputs, loaded.inputNames, loaded.inputTypes);
  check('output', expected.outputs, loaded.outputNames, loaded.outputTypes);
  return problems;
}
