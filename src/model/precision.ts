/**
 * The precision policy: which kernel each weight MatMul of a converted model runs with, for every `--dtype`.
 * Converter, calibration and `models info` share these names; they are written into `manifest.json`.
 *
 * Why the rules (sources in models/README.md):
 * - Trained T5/FlanT5 has very large activations at the feed-forward output projection `wo`: fp16 overflows there
 *   (transformers#5651, #9295), 8-bit FlanT5 gives junk unless `wo` stays in fp32 (transformers#20287, #22568),
 *   and both Hugging Face (`_keep_in_fp32_modules = ["wo"]`) and CTranslate2 (#1074, #1239) keep it unquantised.
 *   Weights of `wo` are well behaved; its *inputs* are not. So `wo` may have quantised weights but never a kernel
 *   that quantises its activations (`int8-dynamic`, `nbits*-a8`).
 * - Hugging Face keeps BLIP-2's query tokens and Q-Former in fp32 (transformers PR #21574). The Q-Former is ~3% of
 *   the parameters, so fp32 there costs little: it stays fp32 in every format.
 * - `MatMulNBits` at accuracy level 4 quantises activations to int8 per block of K (scale = maxabs/127), which
 *   picks wrong tokens on models with massive activations (onnxruntime#29849); `DynamicQuantizeMatMul` uses one
 *   scale for the whole activation matrix, so one outlier channel sets the step for every other value. Which
 *   other MatMuls tolerate that is measured on the user's weights by `--dtype auto` (src/calibrate/).
 */
import type { GraphName, WeightDtype, WeightFormat } from './graph-io.js';

/**
 * A MatMul kernel: `fp32`; `int8-dynamic` (DynamicQuantizeMatMul: per-channel int8 weights, activations quantised
 * per tensor on the fly); `nbits{4,8}-a{8,32}` (MatMulNBits with 4- or 8-bit block-quantised weights, computing
 * with int8-quantised activations (accuracy level 4) or fp32 activations (accuracy level 1)).
 */
export type Kernel = 'fp32' | 'int8-dynamic' | 'nbits4-a8' | 'nbits4-a32' | 'nbits8-a8' | 'nbits8-a32';
export const KERNELS: readonly Kernel[] = [
  'fp32',
  'int8-dynamic',
  'nbits4-a8',
  'nbits4-a32',
  'nbits8-a8',
  'nbits8-a32',
];

/** Whether a kernel quantises its input activations. */
export function quantisesActivations(kernel: Kernel): boolean {
  return kernel === 'int8-dynamic' || kernel.endsWith('-a8');
}

/** Weight bits of a kernel (32 for fp32). */
export function kernelWeightBits(kernel: Kernel): 4 | 8 | 32 {
  return kernel === 'fp32' ? 32 : kernel.startsWith('nbits4') ? 4 : 8;
}

/** MatMulNBits parameters of an `nbits*` kernel. */
export function nbitsParams(kernel: Kernel): { bits: 4 | 8; accuracyLevel: 1 | 4 } | undefined {
  if (!kernel.startsWith('nbits')) return undefined;
  return { bits: kernel.startsWith('nbits4') ? 4 : 8, accuracyLevel: kernel.endsWith('-a8') ? 4 : 1 };
}

/** One weight MatMul as the converter builds it. */
export interface MatMulSite {
  graph: GraphName;
  /** Node path in the graph, e.g. `/encoder/block.3/layer.1/DenseReluDense/wo`. */
  node: string;
  /** Checkpoint tensor names of the weights it holds (several for a fused MatMul). */
  weights: readonly string[];
  /** Output and input features. */
  n: number;
  k: number;
}

/** T5's feed-forward output projection (`...DenseReluDense.wo.weight`), whose inputs carry the massive activations. */
export function isT5FeedForwardOutput(site: Pick<MatMulSite, 'weights'>): boolean {
  return site.weights.some((w) => /\.DenseReluDense\.wo\.weight$/.test(w));
}

/** Graphs that stay fp32 whatever the format. */
export const FP32_GRAPHS: ReadonlySet<GraphName> = new Set<GraphName>(['qformer']);

/** The closest kernel to `kernel` that keeps activations in fp32. */
export function withFp32Activations(kernel: Kernel): Kernel {
  if (kernel === 'int8-dynamic' || kernel === 'nbits8-a8') return 'nbits8-a32';
  if (kernel === 'nbits4-a8') return 'nbits4-a32';
  return kernel;
}

/** Kernels a MatMul may use at all, before any measurement: the policy's hard rules. */
export function allowedKernels(site: MatMulSite): readonly Kernel[] {
  if (FP32_GRAPHS.has(site.graph)) return ['fp32'];
  if (isT5FeedForwardOutput(site)) return KERNELS.filter((k) => !quantisesActivations(k));
  return KERNELS;
}

/** Why a site got a kernel other than its format's: shown in `models info`. */
export function policyReason(site: MatMulSite): string | undefined {
  if (FP32_GRAPHS.has(site.graph)) return 'Q-Former stays fp32';
  if (isT5FeedForwardOutput(site)) return 'T5 wo: activations stay fp32';
  return undefined;
}

function formatKernel(format: WeightFormat, accuracyLevel: number): Kernel {
  const act = accuracyLevel === 4 ? 'a8' : 'a32';
  if (format === 'int8-dynamic') return 'int8-dynamic';
  if (format === 'int8') return `nbits8-${act}`;
  if (format === 'int4') return `nbits4-${act}`;
  return 'fp32';
}

/**
 * The kernel of a MatMul under a fixed `--dtype` (everything but `auto`): the graph's format, then the policy's
 * hard rules.
 */
export function fixedKernel(site: MatMulSite, format: WeightFormat, accuracyLevel: number): Kernel {
  const kernel = formatKernel(format, accuracyLevel);
  if (FP32_GRAPHS.has(site.graph)) return 'fp32';
  return isT5FeedForwardOutput(site) ? withFp32Activations(kernel) : kernel;
}

/** Per-weight record in `manifest.json` `precision.matmuls`, keyed by the checkpoint tensor name. */
export interface MatMulPrecision {
  kernel: Kernel;
  graph: GraphName;
  node: string;
  /** The other weights of a fused MatMul. */
  fusedWith?: string[];
  /** Rule that restricted the choice (policy), if any. */
  policy?: string;
  /** `auto` only: measured relative output error of the chosen kernel on the calibration activations. */
  error?: number;
  /** `auto` only: every kernel's measured errors: `total` vs fp32, `activation` = what quantising the
   * activations added on top of the same quantised weights, `weight` = what rounding the weights cost. */
  candidates?: Partial<Record<Kernel, { total: number; activation: number; weight: number }>>;
  /** `auto` only: input activation max |x| and median |x| over the calibration rows. */
  input?: { maxAbs: number; medianAbs: number };
}

/** What `manifest.json` says about precision: the dtype's rules and one record per MatMul weight. */
export interface PrecisionManifest {
  dtype: WeightDtype;
  blockSize: number;
  /** Token embedding tables (T5 graphs): fp16 in every quantised format. */
  embeddings: 'fp32' | 'fp16';
  /** `auto` only: the error bounds the kernels were chosen with. */
  bounds?: CalibrationBounds;
  matmuls: Record<string, MatMulPrecision>;
}

/**
 * Bounds of the calibrated choice. Errors are relative RMS errors of a MatMul's output on the calibration
 * activations, ‖Ŷ − Y‖ / ‖Y‖ with Y the fp32 product.
 */
export interface CalibrationBounds {
  /** Most a kernel's activation quantisation may add on top of its weight rounding. */
  activation: number;
  /** Most the weight rounding alone may cost, per weight width. */
  weight: { 4: number; 8: number };
}

/**
 * Gaussian-like activations lose ≈0.7% (per-block int8) to ≈1.1% (per-tensor uint8) to activation quantisation,
 * and one outlier channel 100× the rest costs several tens of percent, so 2% passes well-behaved inputs with
 * margin and refuses the outlier case by an order of magnitude. Weight rounding of Gaussian-like weights costs
 * ≈9–11% at 4 bits (block 32–128) and ≈0.5–0.8% at 8 bits: the weight bounds pass those and refuse weights
 * whose blocks are dominated by a few large values.
 */
export const DEFAULT_CALIBRATION_BOUNDS: CalibrationBounds = {
  activation: 0.02,
  weight: { 4: 0.15, 8: 0.02 },
};

/** One graph output compared with the fp32 reference on identical inputs. */
export interface OutputAgreement {
  output: string;
  cosine: number;
  maxAbsError: number;
  /** Relative RMS error ‖ŷ − y‖ / ‖y‖. */
  relativeError: number;
}

/** Input activations of one MatMul: how far the largest value stands out. */
export interface OutlierSummary {
  node: string;
  maxAbs: number;
  medianAbs: number;
  /** maxAbs / medianAbs */
  ratio: number;
}

/** The fidelity report of an `auto` conversion: printed, stored in the manifest, shown by `models info`. */
export interface FidelityReport {
  calibration: { images: string[]; prompts: string[]; samples: number; seconds: number };
  graphs: Partial<
    Record<
      GraphName,
      {
        kernels: Partial<Record<Kernel, number>>;
        /** The MatMul inputs with the largest max/median ratio, largest first. */
        outliers: OutlierSummary[];
        /** MatMuls whose every allowed quantised kernel missed a bound (so they run fp32). */
        fp32Fallbacks: string[];
        agreement: OutputAgreement[];
      }
    >
  >;
  endToEnd: {
    /** Prompts whose greedy ids are identical to the fp32 model's. */
    identicalGreedy: number;
    prompts: number;
    /** Mean over prompts and steps of |top-5(quantised) ∩ top-5(fp32)| / 5, teacher-forced on the fp32 ids. */
    top5Overlap: number;
    samples: { image: string; prompt: string; referenceIds: number[]; ids: number[]; top5Overlap: number }[];
  };
  /** Bounds missed; printed loudly. */
  warnings: string[];
}

/** The weight format a kernel stores. */
export function kernelFormat(kernel: Kernel): WeightFormat {
  if (kernel === 'int8-dynamic' || kernel === 'fp32') return kernel;
  return kernel.startsWith('nbits4') ? 'int4' : 'int8';
}

/** A graph's dominant weight format: its nominal one, or under `auto` that of the kernel most MatMuls run. */
export function graphFormat(entry: {
  weights: WeightFormat | 'calibrated';
  kernels?: Partial<Record<Kernel, number>>;
}): WeightFormat {
  if (entry.weights !== 'calibrated') return entry.weights;
  const counts = Object.entries(entry.kernels ?? {}) as [Kernel, number][];
  counts.sort((a, b) => b[1] - a[1]);
  return counts[0] ? kernelFormat(counts[0][0]) : 'fp32';
}
