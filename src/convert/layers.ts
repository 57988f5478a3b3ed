/**
 * Layer helpers shared by the graphs: each reads its weights from the checkpoint and adds the ops for one
 * building block under a readable node path.
 */
import type { WeightFormat } from '../model/graph-io.js';
import { type GraphBuilder, MS_DOMAIN } from './onnx/graph-builder.js';
import { type QuantBits, quantizeBlockwise } from './quantize.js';

/** Where weights come from: one tensor at a time, shape checked against what the graph needs. */
export interface WeightReader {
  has(name: string): boolean;
  read(name: string, expectedShape: readonly number[]): Promise<Float32Array>;
}

export interface QuantOptions {
  format: WeightFormat;
  /** K-block size of MatMulNBits (power of two ≥ 16). */
  blockSize: number;
  /** MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute. */
  accuracyLevel: number;
}

export interface LayerContext {
  b: GraphBuilder;
  weights: WeightReader;
  quant: QuantOptions;
}

/** Finite stand-in for −∞ in additive masks, as HF uses `finfo(float32).min`. */
export const FLOAT32_MIN = -3.4028234663852886e38;

function quantBits(format: WeightFormat): QuantBits | undefined {
  return format === 'int4' ? 4 : format === 'int8' ? 8 : undefined;
}

/** Per-output-channel symmetric int8 weights, transposed to [K, N] as DynamicQuantizeMatMul takes them. */
function quantizePerChannel(w: Float32Array, n: number, k: number): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(k * n);
  const scales = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    const base = r * k;
    let max = 0;
    for (let c = 0; c < k; c++) max = Math.max(max, Math.abs(w[base + c]!));
    const scale = max / 127 || 1;
    scales[r] = scale;
    for (let c = 0; c < k; c++) q[c * n + r] = Math.round(w[base + c]! / scale);
  }
  return { q, scales };
}

function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = w[base + c]!;
  }
  return out;
}

export interface LinearWeights {
  /** HF layout [out = N, in = K]. */
  weight: Float32Array;
  n: number;
  k: number;
  bias?: Float32Array;
  /** The checkpoint tensors this MatMul holds (e.g. a tied lm_head: the embed_tokens weight). */
  names?: readonly string[];
}

/** `x @ W^T + b` with W as HF stores it; a MatMulNBits node when the model is quantised. */
export function linearFromData(ctx: LayerContext, path: string, x: string, lw: LinearWeights): string {
  const { b, quant } = ctx;
  const format = quant.format;
  const bits = quantBits(format);
  let y: string;
  if (format === 'int8-dynamic') {
    const { q, scales } = quantizePerChannel(lw.weight, lw.n, lw.k);
    const w = b.weight(`${path}.weight_int8`, q, [lw.k, lw.n], false);
    const s = b.weight(`${path}.weight_scales`, scales, [lw.n], false);
    b.parameters += lw.n * lw.k;
    y = b.op(`${path}/DynamicQuantizeMatMul`, 'DynamicQuantizeMatMul', [x, w, s], {}, { domain: MS_DOMAIN });
  } else if (bits) {
    const q = quantizeBlockwise(lw.weight, lw.n, lw.k, bits, quant.blockSize);
    const packed = b.weight(`${path}.weight_q${bits}`, q.packed, [q.n, q.blocks, q.blobSize], false);
    const scales = b.weight(`${path}.weight_scales`, q.scales, [q.n * q.blocks], false);
    b.parameters += lw.n * lw.k;
    y = b.op(
      `${path}/MatMulNBits`,
      'MatMulNBits',
      [x, packed, scales],
      { K: lw.k, N: lw.n, bits, block_size: quant.blockSize, accuracy_level: quant.accuracyLevel },
      { domain: MS_DOMAIN },
    );
  } else {
    const w = b.weight(`${path}.weight`, transpose2d(lw.weight, lw.n, lw.k), [lw.k, lw.n]);
    y = b.op(`${path}/MatMul`, 'MatMul', [x, w]);
  }
  if (lw.bias) {
    const bias = b.weight(`${path}.bias`, lw.bias, [lw.n]);
    y = b.op(`${path}/Add`, 'Add', [y, bias]);
  }
  return y;
}

/** A Linear read straight from the checkpoint (`<prefix>.weight`, optional `<prefix>.bias`). */
export async function linear(
  ctx: LayerContext,
  path: string,
  x: string,
  prefix: string,
  n: number,
  k: number,
  options: { bias?: boolean } = {},
): Promise<string> {
  const weight = await ctx.weights.read(`${prefix}.weight`, [n, k]);
  const bias = options.bias ? await ctx.weights.read(`${prefix}.bias`, [n]) : undefined;
  return linearFromData(ctx, path, x, {
    weight,
    n,
    k,
    ...(bias ? { bias } : {}),
  });
}

/**
 * Several bias-free Linears over the same input as one MatMul (their rows stacked), split afterwards: one kernel
 * launch and one pass over the input instead of several. Row-wise quantisation makes this exact.
 */
export async function fusedLinear(
  ctx: LayerContext,
  path: string,
  x: string,
  prefixes: readonly string[],
  n: number,
  k: number,
): Promise<string[]> {
  const weight = new Float32Array(prefixes.length * n * k);
  for (const [i, prefix] of prefixes.entries()) {
    weight.set(await ctx.weights.read(`${prefix}.weight`, [n, k]), i * n * k);
  }
  const y = linearFromData(ctx, path, x, { weight, n: prefixes.length * n, k });
  const sizes = ctx.b.int64(prefixes.map(() => n));
  return ctx.b.opN(`${path}/Split`, 'Split', [y, sizes], { axis: -1 }, { outputs: prefixes.length });
}

export async function layerNorm(
  ctx: LayerContext,
  path: string,
  x: string,
  prefix: string,
  dim: number,
  eps: number,
): Promise<string> {
  const scale = ctx.b.weight(`${prefix}.weight`, await ctx.weights.read(`${prefix}.weight`, [dim]), [dim]);
  const bias = ctx.b.weight(`${prefix}.bias`, await ctx.weights.read(`${prefix}.bias`, [dim]), [dim]);
  return ctx.b.op(`${path}/LayerNormalization`, 'LayerNormalization', [x, scale, bias], {
    axis: -1,
    epsilon: { float: eps },
  });
}

/**
 * T5's RMS norm: `w · x / sqrt(mean(x²) + eps)`, no mean subtraction, no bias. Written as the op pattern
 * onnxruntime fuses into SimplifiedLayerNormalization.
 */
export async function rmsNorm(
  ctx: LayerContext,
  path: string,
  x: string,
  weightName: string,
  dim: number,
  eps: number,
): Promise<string> {
  const { b } = ctx;
  const w = b.weight(weightName, await ctx.weights.read(weightName, [dim]), [dim]);
  const sq = b.op(`${path}/Pow`, 'Pow', [x, b.float([2])]);
  const mean = b.op(`${path}/ReduceMean`, 'ReduceMean', [sq], { axes: [-1], keepdims: 1 });
  const plusEps = b.op(`${path}/Add`, 'Add', [mean, b.float([eps])]);
  const rms = b.op(`${path}/Sqrt`, 'Sqrt', [plusEps]);
  const normed = b.op(`${path}/Div`, 'Div', [x, rms]);
  return b.op(`${path}/Mul`, 'Mul', [normed, w]);
}

/** [B, S, H·d] → [B, H, S, d] (or [B, H, d, S] with `forKeys`, ready for q @ kᵀ). */
export function splitHeads(
  b: GraphBuilder,
  path: string,
  x: string,
  heads: number,
  headDim: number,
  forKeys = false,
): string {
  const r = b.op(`${path}/Reshape`, 'Reshape', [x, b.int64([0, 0, heads, headDim])]);
  return b.op(`${path}/Transpose`, 'Transpose', [r], { perm: forKeys ? [0, 2, 3, 1] : [0, 2, 1, 3] });
}

/** [B, H, S, d] → [B, S, H·d] */
export function mergeHeads(b: GraphBuilder, path: string, x: string, inner: number): string {
  const t = b.op(`${path}/Transpose`, 'Transpose', [x], { perm: [0, 2, 1, 3] });
  return b.op(`${path}/Reshape`, 'Reshape', [t, b.int64([0, 0, inner])]);
}

/**
 * softmax(q @ kᵀ + bias) @ v over heads. `kT` is [B, H, d, S]; any scaling is folded into q beforehand.
 * `bias` is an additive mask and/or position bias broadcastable to [B, H, Sq, Sk].
 */
export function scaledDotAttention(
  b: GraphBuilder,
  path: string,
  q: string,
  kT: string,
  v: string,
  bias?: string,
): string {
  let scores = b.op(`${path}/QK/MatMul`, 'MatMul', [q, kT]);
  if (bias) scores = b.op(`${path}/QK/AddBias`, 'Add', [scores, bias]);
  const probs = b.op(`${path}/Softmax`, 'Softmax', [scores], { axis: -1 });
  return b.op(`${path}/PV/MatMul`, 'MatMul', [probs, v]);
}

/** Exact (erf) GELU, as the vision encoder and Q-Former use. */
export function gelu(b: GraphBuilder, path: string, x: string): string {
  return b.op(`${path}/Gelu`, 'Gelu', [x], {}, { domain: MS_DOMAIN });
}

/** tanh-approximated GELU (`gelu_new`), as T5's gated-gelu feed-forward uses. */
export function geluTanh(b: GraphBuilder, path: string, x: string): string {
  return b.op(`${path}/FastGelu`, 'FastGelu', [x], {}, { domain: MS_DOMAIN });
}

/** Additive mask [B, 1, 1, S] from an int64 attention mask [B, S]: 0 where attended, float32 min elsewhere. */
export function additiveMask(b: GraphBuilder, path: string, mask: string): string {
  const f = b.op(`${path}/Cast`, 'Cast', [mask], { to: 1 });
  const inv = b.op(`${path}/Sub`, 'Sub', [b.float([1]), f]);
  const scaled = b.op(`${path}/Mul`, 'Mul', [inv, b.float([FLOAT32_MIN])]);
  return b.op(`${path}/Unsqueeze`, 'Unsqueeze', [scaled, b.int64([1, 2])]);
}
