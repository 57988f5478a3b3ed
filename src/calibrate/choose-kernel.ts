/**
 * The calibrated choice: for each MatMul, the fastest kernel the policy allows whose measured errors stay within
 * the bounds. Speed order per graph comes from the kernel benchmark (docs/benchmarks.md, "The machine's limits"):
 *
 * - Vision encoder (257 rows per picture, compute-bound): `int8-dynamic` runs 1.8–2× the MatMulNBits kernels;
 *   then 8-bit MatMulNBits with int8 activations, then with fp32 activations (fast at many rows), then fp32.
 *   4-bit weights are not offered: at full size they move the vision features to cosine 0.94.
 * - Language-model graphs (a few rows; weight bytes are the cost, and the 3.5 GB memory goal needs 4-bit):
 *   `nbits4-a8`, then `nbits8-a8` (when 4-bit rounding is what fails), then `nbits4-a32` (when activations are
 *   what fails; 2–6× slower than a8 at 1–43 rows), then fp32. `nbits8-a32` is never offered there: it has no
 *   fast kernel at few rows and runs slower than fp32. `int8-dynamic` would be faster in the T5 encoder but needs
 *   twice the memory of 4-bit.
 */
import type { GraphName } from '../model/graph-io.js';
import {
  allowedKernels,
  type CalibrationBounds,
  type Kernel,
  kernelWeightBits,
  type MatMulSite,
} from '../model/precision.js';
import type { MeasuredKernels } from './measure-kernels.js';

const VISION_ORDER: readonly Kernel[] = ['int8-dynamic', 'nbits8-a8', 'nbits8-a32', 'fp32'];
const LANGUAGE_ORDER: readonly Kernel[] = ['nbits4-a8', 'nbits8-a8', 'nbits4-a32', 'fp32'];

/** Candidate kernels of a graph, fastest first. */
export function speedOrder(graph: GraphName): readonly Kernel[] {
  return graph === 'vision' ? VISION_ORDER : LANGUAGE_ORDER;
}

export interface KernelChoice {
  kernel: Kernel;
  /** The chosen kernel's total error (0 for fp32). */
  error: number;
  /** Why faster kernels were passed over, one line each. */
  rejected: string[];
}

/** Whether a kernel's measured errors are within the bounds; the reason when not. */
export function withinBounds(
  kernel: Kernel,
  measured: MeasuredKernels,
  bounds: CalibrationBounds,
): string | undefined {
  if (kernel === 'fp32') return undefined;
  const m = measured[kernel];
  if (!m) return 'not measured';
  const bits = kernelWeightBits(kernel) as 4 | 8;
  if (m.activation > bounds.activation) {
    return `activation error ${pct(m.activation)} > ${pct(bounds.activation)}`;
  }
  if (m.weight > bounds.weight[bits])
    return `${bits}-bit weight error ${pct(m.weight)} > ${pct(bounds.weight[bits])}`;
  return undefined;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;
}

export function chooseKernel(
  site: MatMulSite,
  measured: MeasuredKernels,
  bounds: CalibrationBounds,
): KernelChoice {
  const allowed = new Set(allowedKernels(site));
  const rejected: string[] = [];
  for (const kernel of speedOrder(site.graph)) {
    if (!allowed.has(kernel)) {
      rejected.push(`${kernel}: not allowed by the policy`);
      continue;
    }
    const reason = withinBounds(kernel, measured, bounds);
    if (!reason) return { kernel, error: measured[kernel]?.total ?? 0, rejected };
    rejected.push(`${kernel}: ${reason}`);
  }
  return { kernel: 'fp32', error: 0, rejected };
}
