/**
 * The tensors a Hugging Face `Blip2ForConditionalGeneration` checkpoint (FlanT5 or OPT language model) holds: names
 * exactly as `save_pretrained` writes them and shapes derived from the resolved config. The converter checks a
 * checkpoint against it and the synthetic-checkpoint writer produces it.
 *
 * Vision attention: current checkpoints store one `qkv.bias [3D]` (= cat(q_bias, zeros, v_bias)); older ones
 * store `q_bias`/`v_bias` instead. The layout lists the current form; the converter accepts both.
 */

import type { Blip2Config, OptConfig, T5Config } from '../model/config.js';
import { languageModelWidth, visionSequenceLength } from '../model/config.js';

/** What a tensor is, as far as random initialisation and weight formats care. */
export type TensorKind =
  /** A Linear weight [out, in]. */
  | 'linear'
  /** A Linear bias. */
  | 'bias'
  /** LayerNorm or T5 RMSNorm scale. */
  | 'norm_weight'
  | 'norm_bias'
  /** Token embedding table [vocab, d]. */
  | 'embedding'
  | 'query_tokens'
  | 'position_embedding'
  | 'class_embedding'
  /** Vision patch Conv2d weight [D, C, P, P]. */
  | 'patch_conv'
  /** T5 relative_attention_bias [buckets, heads]. */
  | 'relative_bias'
  | 'lm_head'
  /** Vision `qkv.bias` [3D]: q and v biases around a block of zeros for k. */
  | 'qkv_bias';

export interface TensorSpec {
  name: string;
  shape: number[];
  kind: TensorKind;
  /** False for tensors some checkpoints carry but the converted graphs never read. */
  used: boolean;
  /** True when real checkpoints may or may not contain the tensor; a converter must not require it. */
  optional: boolean;
  /** Set when the tensor is a saved copy of another one (T5's tied `embed_tokens` alias `shared`, OPT's tied lm_head). */
  aliasOf?: string;
}

export interface LayoutOptions {
  /** Include the optional tensors (tied embedding copies, Q-Former text branch). Default true. */
  includeOptional?: boolean;
  /** Q-Former text-branch vocabulary and positions (BERT defaults); only shape optional, unused tensors. */
  qformerVocabSize?: number;
  qformerMaxPositionEmbeddings?: number;
}

type Add = (name: string, shape: number[], kind: TensorKind, extra?: Partial<TensorSpec>) => void;

interface LayoutHelpers {
  add: Add;
  linear(prefix: string, out: number, inp: number, bias: boolean, extra?: Partial<TensorSpec>): void;
  layerNorm(prefix: string, dim: number, extra?: Partial<TensorSpec>): void;
}

/** Every tensor of a `Blip2ForConditionalGeneration` checkpoint, in module order. */
export function hfTensorLayout(config: Blip2Config, options: LayoutOptions = {}): TensorSpec[] {
  const includeOptional = options.includeOptional ?? true;
  const specs: TensorSpec[] = [];
  const add: Add = (name, shape, kind, extra = {}) => {
    const spec: TensorSpec = { name, shape, kind, used: true, optional: false, ...extra };
    if (spec.optional && !includeOptional) return;
    specs.push(spec);
  };
  const linear: LayoutHelpers['linear'] = (prefix, out, inp, bias, extra = {}) => {
    add(`${prefix}.weight`, [out, inp], 'linear', extra);
    if (bias) add(`${prefix}.bias`, [out], 'bias', extra);
  };
  const layerNorm: LayoutHelpers['layerNorm'] = (prefix, dim, extra = {}) => {
    add(`${prefix}.weight`, [dim], 'norm_weight', extra);
    add(`${prefix}.bias`, [dim], 'norm_bias', extra);
  };

  // Vision transformer (ViT-g for the real models).
  const v = config.vision;
  const D = v.hiddenSize;
  add('vision_model.embeddings.class_embedding', [1, 1, D], 'class_embedding');
  add(
    'vision_model.embeddings.patch_embedding.weight',
    [D, v.numChannels, v.patchSize, v.patchSize],
    'patch_conv',
  );
  add('vision_model.embeddings.patch_embedding.bias', [D], 'bias');
  add('vision_model.embeddings.position_embedding', [1, visionSequenceLength(v), D], 'position_embedding');
  for (let i = 0; i < v.numLayers; i++) {
    const p = `vision_model.encoder.layers.${i}`;
    add(`${p}.self_attn.qkv.weight`, [3 * D, D], 'linear');
    if (v.qkvBias) add(`${p}.self_attn.qkv.bias`, [3 * D], 'qkv_bias');
    linear(`${p}.self_attn.projection`, D, D, true);
    layerNorm(`${p}.layer_norm1`, D);
    linear(`${p}.mlp.fc1`, v.intermediateSize, D, true);
    linear(`${p}.mlp.fc2`, D, v.intermediateSize, true);
    layerNorm(`${p}.layer_norm2`, D);
  }
  layerNorm('vision_model.post_layernorm', D);

  // Q-Former (BERT-style, post-LN) and the learned queries.
  const q = config.qformer;
  const H = q.hiddenSize;
  add('query_tokens', [1, config.numQueryTokens, H], 'query_tokens');
  layerNorm('qformer.layernorm', H);
  // LAVIS's BertModel keeps text embeddings that HF's Q-Former dropped; some converted checkpoints carry them.
  const textBranch: Partial<TensorSpec> = { used: false, optional: true };
  add(
    'qformer.embeddings.word_embeddings.weight',
    [options.qformerVocabSize ?? 30522, H],
    'embedding',
    textBranch,
  );
  add(
    'qformer.embeddings.position_embeddings.weight',
    [options.qformerMaxPositionEmbeddings ?? 512, H],
    'embedding',
    textBranch,
  );
  layerNorm('qformer.embeddings.LayerNorm', H, textBranch);
  for (let i = 0; i < q.numLayers; i++) {
    const p = `qformer.encoder.layer.${i}`;
    for (const proj of ['query', 'key', 'value']) linear(`${p}.attention.attention.${proj}`, H, H, true);
    linear(`${p}.attention.output.dense`, H, H, true);
    layerNorm(`${p}.attention.output.LayerNorm`, H);
    if (i % q.crossAttentionFrequency === 0) {
      linear(`${p}.crossattention.attention.query`, H, H, true);
      linear(`${p}.crossattention.attention.key`, H, q.encoderHiddenSize, true);
      linear(`${p}.crossattention.attention.value`, H, q.encoderHiddenSize, true);
      linear(`${p}.crossattention.output.dense`, H, H, true);
      layerNorm(`${p}.crossattention.output.LayerNorm`, H);
    }
    // The text branch's feed-forward (used only for text tokens, which BLIP-2 generation never feeds in).
    linear(`${p}.intermediate.dense`, q.intermediateSize, H, true, textBranch);
    linear(`${p}.output.dense`, H, q.intermediateSize, true, textBranch);
    layerNorm(`${p}.output.LayerNorm`, H, textBranch);
    linear(`${p}.intermediate_query.dense`, q.intermediateSize, H, true);
    linear(`${p}.output_query.dense`, H, q.intermediateSize, true);
    layerNorm(`${p}.output_query.LayerNorm`, H);
  }

  const width = languageModelWidth(config);
  add('language_projection.weight', [width, H], 'linear');
  add('language_projection.bias', [width], 'bias');

  if (config.languageModel === 'opt') optLayout(config.text, { add, linear, layerNorm });
  else t5Layout(config.text, add);
  return specs;
}

/** `OPTForCausalLM`: pre-LN decoder layers with biases everywhere; lm_head tied to embed_tokens by default. */
function optLayout(t: OptConfig, { add, linear, layerNorm }: LayoutHelpers): void {
  const p = 'language_model.model.decoder';
  const D = t.hiddenSize;
  add(`${p}.embed_tokens.weight`, [t.vocabSize, D], 'embedding');
  add(`${p}.embed_positions.weight`, [t.maxPositionEmbeddings + 2, D], 'position_embedding');
  for (let i = 0; i < t.numLayers; i++) {
    const l = `${p}.layers.${i}`;
    for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj'])
      linear(`${l}.self_attn.${proj}`, D, D, true);
    layerNorm(`${l}.self_attn_layer_norm`, D);
    linear(`${l}.fc1`, t.ffnDim, D, true);
    linear(`${l}.fc2`, D, t.ffnDim, true);
    layerNorm(`${l}.final_layer_norm`, D);
  }
  layerNorm(`${p}.final_layer_norm`, D);
  // Tied: HF's save_pretrained drops the copy, but some checkpoints keep it.
  if (t.tieWordEmbeddings) {
    add('language_model.lm_head.weight', [t.vocabSize, D], 'embedding', {
      used: false,
      optional: true,
      aliasOf: `${p}.embed_tokens.weight`,
    });
  } else {
    add('language_model.lm_head.weight', [t.vocabSize, D], 'lm_head');
  }
}

/** T5: RMSNorm scales only, no Linear biases. */
function t5Layout(t: T5Config, add: Add): void {
  const d = t.dModel;
  const inner = t.numHeads * t.dKv;
  const lm = 'language_model';
  add(`${lm}.shared.weight`, [t.vocabSize, d], 'embedding');
  const tiedCopy: Partial<TensorSpec> = { used: false, optional: true, aliasOf: `${lm}.shared.weight` };
  const attention = (p: string, withBias: boolean): void => {
    add(`${p}.q.weight`, [inner, d], 'linear');
    add(`${p}.k.weight`, [inner, d], 'linear');
    add(`${p}.v.weight`, [inner, d], 'linear');
    add(`${p}.o.weight`, [d, inner], 'linear');
    if (withBias)
      add(
        `${p}.relative_attention_bias.weight`,
        [t.relativeAttentionNumBuckets, t.numHeads],
        'relative_bias',
      );
  };
  const feedForward = (p: string): void => {
    if (t.gatedFfn) {
      add(`${p}.DenseReluDense.wi_0.weight`, [t.dFf, d], 'linear');
      add(`${p}.DenseReluDense.wi_1.weight`, [t.dFf, d], 'linear');
    } else {
      add(`${p}.DenseReluDense.wi.weight`, [t.dFf, d], 'linear');
    }
    add(`${p}.DenseReluDense.wo.weight`, [d, t.dFf], 'linear');
    add(`${p}.layer_norm.weight`, [d], 'norm_weight');
  };
  add(`${lm}.encoder.embed_tokens.weight`, [t.vocabSize, d], 'embedding', tiedCopy);
  for (let i = 0; i < t.numLayers; i++) {
    const p = `${lm}.encoder.block.${i}`;
    attention(`${p}.layer.0.SelfAttention`, i === 0);
    add(`${p}.layer.0.layer_norm.weight`, [d], 'norm_weight');
    feedForward(`${p}.layer.1`);
  }
  add(`${lm}.encoder.final_layer_norm.weight`, [d], 'norm_weight');
  add(`${lm}.decoder.embed_tokens.weight`, [t.vocabSize, d], 'embedding', tiedCopy);
  for (let i = 0; i < t.numDecoderLayers; i++) {
    const p = `${lm}.decoder.block.${i}`;
    attention(`${p}.layer.0.SelfAttention`, i === 0);
    add(`${p}.layer.0.layer_norm.weight`, [d], 'norm_weight');
    attention(`${p}.layer.1.EncDecAttention`, false);
    add(`${p}.layer.1.layer_norm.weight`, [d], 'norm_weight');
    feedForward(`${p}.layer.2`);
  }
  add(`${lm}.decoder.final_layer_norm.weight`, [d], 'norm_weight');
  // With tied embeddings HF saves no lm_head and projects with `shared`.
  if (!t.tieWordEmbeddings) add(`${lm}.lm_head.weight`, [t.vocabSize, d], 'lm_head');
}

export function tensorElementCount(spec: Pick<TensorSpec, 'shape'>): number {
  return spec.shape.reduce((a, b) => a * b, 1);
}

/** Parameter count of a layout (aliases count once, as HF counts unique parameters). */
export function layoutParameterCount(specs: readonly TensorSpec[]): number {
  let n = 0;
  for (const s of specs) if (!s.aliasOf) n += tensorElementCount(s);
  return n;
}
