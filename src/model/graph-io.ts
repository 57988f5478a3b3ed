/**
 * The one description of the converted graphs' files, inputs and outputs. The converter builds exactly these
 * names and the engine feeds exactly these, so a change here changes both sides at once.
 *
 * Symbolic dims: B batch (beams), Q query tokens (may be 0: OPT steps), L prompt tokens, E = Q + L encoder
 * positions, P past decoder positions, T new decoder positions (1 per step), N logit positions. The converter
 * fixes the image size, the image tokens and the Q-Former's query count from the config; they are numbers.
 */

import type { LanguageModelKind } from './config.js';
import type { FidelityReport, Kernel, PrecisionManifest } from './precision.js';

export const MODEL_FORMAT = 'blip2-bot-onnx';
export const MODEL_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

export const GRAPH_FILES = {
  vision: 'vision_encoder.onnx',
  qformer: 'qformer.onnx',
  encoder: 't5_encoder.onnx',
  crossKv: 't5_cross_kv.onnx',
  decoder: 't5_decoder.onnx',
  opt: 'opt_decoder.onnx',
} as const;

export type GraphName = keyof typeof GRAPH_FILES;

/** The graphs a model dir holds, per kind of language model, in the order the converter writes them. */
export const MODEL_GRAPHS: Record<LanguageModelKind, readonly GraphName[]> = {
  t5: ['vision', 'qformer', 'encoder', 'crossKv', 'decoder'],
  opt: ['vision', 'qformer', 'opt'],
};

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
  /** int64 [B, E]: the encoder's attention mask (0 pads rows of shorter prompts in a merged batch). */
  encoderAttentionMask: 'encoder_attention_mask',
  /**
   * int64 [B, P + T]: 1 = attend to this cached or new position. Rows of requests with fewer past positions are
   * left-padded with 0 when several requests decode in one batch; T5's relative positions depend only on the
   * distance between key and query, so left padding changes nothing else. Graphs of converters before it lack
   * this input; the engine then decodes one request at a time.
   */
  decoderAttentionMask: 'decoder_attention_mask',
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

/**
 * The OPT language model in one graph, for the prefill and for each cached step. Prefill: Q query embeddings and
 * the L prompt ids, no past. Step: Q = 0, one id, the past. Positions come from the attention mask as HF computes
 * them (`cumsum(mask) * mask - 1`, table row + 2), so left padding needs nothing else.
 */
export const OPT_IO = {
  /** float32 [B, Q, hidden]; Q = 0 after the prefill or for a text-only prompt. */
  queryEmbeds: 'query_embeds',
  /** int64 [B, L]: new token ids (prefill: the prompt, bos 2 first). */
  inputIds: 'input_ids',
  /** int64 [B, P + Q + L]: 1 = attend, over past, query and new positions (HF's mask grows by one per step). */
  attentionMask: 'attention_mask',
  /** int64 [1]: logits are computed for this many trailing positions (1 when generating; Q + L to inspect). */
  numLogits: 'num_logits',
  pastKey: (layer: number) => `past.${layer}.key`,
  pastValue: (layer: number) => `past.${layer}.value`,
  /** float32 [B, Q + L, hidden]: HF's `inputs_embeds` (before positions are added). */
  inputsEmbeds: 'inputs_embeds',
  /** float32 [B, Q + L, hidden]: after the decoder's final_layer_norm. */
  hiddenStates: 'last_hidden_state',
  /** float32 [B, num_logits, vocab] */
  logits: 'logits',
  presentKey: (layer: number) => `present.${layer}.key`,
  presentValue: (layer: number) => `present.${layer}.value`,
} as const;

/**
 * What `convert --dtype` takes: `auto` (the default: each MatMul's kernel calibrated on the user's weights,
 * src/calibrate/), one format for every graph, or `mixed` (fastest per graph on CPU).
 */
export type WeightDtype = 'auto' | 'fp32' | 'int8' | 'int4' | 'mixed';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['auto', 'fp32', 'int8', 'int4', 'mixed'];

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
  opt: f,
});

/**
 * Per-graph weight format of each `--dtype`. `mixed`: per-channel int8 for the vision encoder and Q-Former, whose
 * 257-row MatMuls are compute-bound and run fastest through DynamicQuantizeMatMul; int4 for the T5 stacks, where
 * few rows make the weights' size the cost (and int4 is as fast as int8 there, at half the memory).
 */
export const DTYPE_FORMATS: Record<Exclude<WeightDtype, 'auto'>, Record<GraphName, WeightFormat>> = {
  fp32: UNIFORM('fp32'),
  int8: UNIFORM('int8'),
  int4: UNIFORM('int4'),
  mixed: {
    vision: 'int8-dynamic',
    qformer: 'int8-dynamic',
    encoder: 'int4',
    crossKv: 'int4',
    decoder: 'int4',
    opt: 'int4',
  },
};

/** The Hub repo and commit a pulled model was converted from, and the `--dtype` it was pulled with. */
export interface HubSource {
  repo: string;
  revision: string;
  commit: string;
  dtype: string;
}

export interface GraphEntry {
  file: string;
  dataFile?: string;
  bytes: number;
  /** The graph's nominal format (`calibrated` under `auto`); `kernels` counts what its MatMuls really run. */
  weights: WeightFormat | 'calibrated';
  kernels?: Partial<Record<Kernel, number>>;
}

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
  /** The kernel of every weight MatMul, keyed by checkpoint tensor name (src/model/precision.ts). */
  precision?: PrecisionManifest;
  /** `auto` only: how closely the converted model follows the fp32 reference (src/calibrate/fidelity.ts). */
  fidelity?: FidelityReport;
  /** True for the seeded random demo model: its answers are meaningless. */
  demo: boolean;
  source: {
    dir: string;
    /** sha256 over the source config.json and the safetensors headers and sizes. */
    checksum: string;
    config: unknown;
    /** Where `models pull` fetched the checkpoint: a rerun with the same repo, commit and dtype has nothing to do. */
    hub?: HubSource;
  };
  /** Absent in models converted before OPT support: FlanT5. */
  languageModel?: LanguageModelKind;
  /** The graphs of `MODEL_GRAPHS[languageModel]`. */
  graphs: Partial<Record<GraphName, GraphEntry>>;
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
  /** An input older converters did not write: its absence is no mismatch (the engine checks for it). */
  optional?: true;
}

export interface GraphSignature {
  inputs: GraphTensorSpec[];
  outputs: GraphTensorSpec[];
}

interface SignatureCommon {
  vision: { hiddenSize: number; numChannels: number; imageSize: number; patchSize: number };
  qformer: { hiddenSize: number };
  numQueryTokens: number;
}

/** The dims a signature needs from the resolved config (a structural subset of Blip2Config; no kind: FlanT5). */
export type SignatureConfig =
  | (SignatureCommon & {
      languageModel?: 't5';
      text: { dModel: number; dKv: number; numHeads: number; numDecoderLayers: number; vocabSize: number };
    })
  | (SignatureCommon & {
      languageModel: 'opt';
      text: { hiddenSize: number; headDim: number; numHeads: number; numLayers: number; vocabSize: number };
    });

const f32 = (name: string, dims: (number | string)[]): GraphTensorSpec => ({ name, type: 'float32', dims });
const i64 = (name: string, dims: (number | string)[]): GraphTensorSpec => ({ name, type: 'int64', dims });

/** CLS + one token per patch (as `visionSequenceLength` in config.ts, for the structural subset here). */
function imageTokens(v: SignatureCommon['vision']): number {
  const side = v.imageSize / v.patchSize;
  return 1 + side * side;
}

function perLayer(layers: number, make: (layer: number) => GraphTensorSpec[]): GraphTensorSpec[] {
  return Array.from({ length: layers }, (_, i) => make(i)).flat();
}

/**
 * What the converter of this version writes for `graph` of a model with `config`: the graph builders declare
 * their inputs and outputs from it and the engine checks loaded sessions against it.
 */
export function graphSignature(graph: GraphName, config: SignatureConfig): GraphSignature {
  const { vision, qformer, numQueryTokens: Q } = config;
  if (config.languageModel === 'opt') {
    const o = config.text;
    switch (graph) {
      case 'vision':
      case 'qformer':
        break;
      case 'opt':
        return {
          inputs: [
            f32(OPT_IO.queryEmbeds, ['B', 'Q', o.hiddenSize]),
            i64(OPT_IO.inputIds, ['B', 'L']),
            i64(OPT_IO.attentionMask, ['B', 'P+Q+L']),
            i64(OPT_IO.numLogits, [1]),
            ...perLayer(o.numLayers, (i) => [
              f32(OPT_IO.pastKey(i), ['B', o.numHeads, 'P', o.headDim]),
              f32(OPT_IO.pastValue(i), ['B', o.numHeads, 'P', o.headDim]),
            ]),
          ],
          outputs: [
            f32(OPT_IO.inputsEmbeds, ['B', 'Q+L', o.hiddenSize]),
            ...perLayer(o.numLayers, (i) => [
              f32(OPT_IO.presentKey(i), ['B', o.numHeads, 'P+Q+L', o.headDim]),
              f32(OPT_IO.presentValue(i), ['B', o.numHeads, 'P+Q+L', o.headDim]),
            ]),
            f32(OPT_IO.hiddenStates, ['B', 'Q+L', o.hiddenSize]),
            f32(OPT_IO.logits, ['B', 'N', o.vocabSize]),
          ],
        };
      default:
        throw new Error(`an OPT model has no ${graph} graph`);
    }
  } else if (graph === 'opt') {
    throw new Error('a FlanT5 model has no opt graph');
  }
  const width = config.languageModel === 'opt' ? config.text.hiddenSize : config.text.dModel;
  switch (graph) {
    case 'vision':
      return {
        inputs: [f32(VISION_IO.pixelValues, ['B', vision.numChannels, vision.imageSize, vision.imageSize])],
        outputs: [f32(VISION_IO.imageEmbeds, ['B', imageTokens(vision), vision.hiddenSize])],
      };
    case 'qformer':
      return {
        inputs: [f32(QFORMER_IO.imageEmbeds, ['B', imageTokens(vision), vision.hiddenSize])],
        outputs: [
          f32(QFORMER_IO.qformerOutput, ['B', Q, qformer.hiddenSize]),
          f32(QFORMER_IO.queryEmbeds, ['B', Q, width]),
        ],
      };
  }
  if (config.languageModel === 'opt') throw new Error(`an OPT model has no ${graph} graph`);
  const t = config.text;
  switch (graph) {
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
          { ...i64(DECODER_IO.decoderAttentionMask, ['B', 'P+T']), optional: true },
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
    const missing = specs.filter((s) => !have.has(s.name) && !s.optional).map((s) => s.name);
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
