/**
 * Measures what each kernel does to one MatMul's output on real activations: a one-node-per-kernel graph built
 * with the converter's own `matMulNode` (so the weights are quantised exactly as the converted model's) runs
 * on the captured input rows, and every output is compared with the fp32 product.
 *
 * Two errors per kernel, both relative RMS errors ‖Ŷ − Y‖ / ‖Y‖:
 * - `total`: against the fp32 product Y;
 * - `activation`: against the same quantised weights computing on fp32 activations, i.e. what quantising the
 *   activations alone adds (the `-a32` twin of an `-a8` kernel; for `int8-dynamic`, its int8 weights
 *   dequantised into an fp32 MatMul).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { matMulNode, type PreparedWeights } from '../convert/layers.js';
import { GraphBuilder, TensorDataType } from '../convert/onnx/graph-builder.js';
import {
  dequantizeBlockwise,
  dequantizePerChannel,
  quantizeBlockwise,
  quantizePerChannel,
} from '../convert/quantize.js';
import { createSession, ort } from '../engine/ort.js';
import type { Kernel } from '../model/precision.js';

export interface KernelErrors {
  total: number;
  /** What quantising the activations added: the kernel against its fp32-activation twin. */
  activation: number;
  /** What rounding the weights cost: the fp32-activation twin against fp32. */
  weight: number;
}

export type MeasuredKernels = Partial<Record<Kernel, KernelErrors>>;

/** Σ(a − b)² and Σb², accumulated over runs. */
class ErrorSum {
  private num = 0;
  private den = 0;
  add(a: Float32Array, b: Float32Array): void {
    for (let i = 0; i < b.length; i++) {
      const d = a[i]! - b[i]!;
      this.num += d * d;
      this.den += b[i]! * b[i]!;
    }
  }
  /** Relative RMS error ‖a − b‖ / ‖b‖. */
  get value(): number {
    return this.den === 0 ? (this.num === 0 ? 0 : Number.POSITIVE_INFINITY) : Math.sqrt(this.num / this.den);
  }
}

/**
 * Outputs of the measurement graph: the real kernels that quantise activations, and fp32 MatMuls of each
 * quantised weight dequantised. MatMulNBits at accuracy level 1 dequantises its weights and computes in fp32, so
 * the `-a32` kernels *are* those fp32-activation twins (up to summation order): they are measured through the
 * twins, which run on onnxruntime's fast fp32 GEMM instead of its slow 8-bit level-1 path.
 */
const TWIN: Record<Exclude<Kernel, 'fp32'>, string> = {
  'int8-dynamic': 'int8-weights',
  'nbits4-a8': 'nbits4-weights',
  'nbits4-a32': 'nbits4-weights',
  'nbits8-a8': 'nbits8-weights',
  'nbits8-a32': 'nbits8-weights',
};

/**
 * Runs the MatMul (weight [n, k], HF layout) in every kernel over its input activations, one run per chunk of
 * rows as the model ran them (DynamicQuantizeMatMul's one scale covers one run's rows), and returns each
 * non-fp32 kernel's errors over all chunks.
 */
export async function measureKernels(
  weight: Float32Array,
  n: number,
  k: number,
  runs: readonly Float32Array[],
  blockSize: number,
): Promise<MeasuredKernels> {
  const dir = await mkdtemp(join(tmpdir(), 'blip2-calib-'));
  try {
    const path = join(dir, 'kernels.onnx');
    const b = new GraphBuilder('calibration', `${path}.data`);
    const x = b.input('x', TensorDataType.FLOAT, ['rows', k]);
    const out = (name: string, y: string) => b.output(name, y, TensorDataType.FLOAT, ['rows', n]);
    const fp32 = (name: string, w: Float32Array) =>
      out(name, matMulNode(b, `/${name}`, x, { weight: w, n, k }, 'fp32', blockSize));
    const prepared = (name: string, kernel: Kernel, p: PreparedWeights) =>
      out(name, matMulNode(b, `/${name}`, x, { weight, n, k }, kernel, blockSize, p));

    fp32('fp32', weight);
    const perChannel = quantizePerChannel(weight, n, k);
    prepared('int8-dynamic', 'int8-dynamic', { perChannel });
    fp32('int8-weights', dequantizePerChannel(perChannel.q, perChannel.scales, n, k));
    for (const bits of [4, 8] as const) {
      const blockwise = quantizeBlockwise(weight, n, k, bits, blockSize);
      prepared(`nbits${bits}-a8`, `nbits${bits}-a8`, { blockwise });
      fp32(`nbits${bits}-weights`, dequantizeBlockwise(blockwise, bits, blockSize));
    }
    await writeFile(path, b.finish('calibration: one MatMul in every kernel'));

    const names = ['int8-dynamic', 'nbits4-a8', 'nbits8-a8', ...new Set(Object.values(TWIN))];
    const vsFp32 = new Map(names.map((name) => [name, new ErrorSum()]));
    const vsTwin = new Map(names.map((name) => [name, new ErrorSum()]));
    const session = await createSession(path, {
      graphOptimizationLevel: 'all',
      enableCpuMemArena: false,
    });
    try {
      for (const rows of runs) {
        const y = (await session.run({ x: new ort.Tensor('float32', rows, [rows.length / k, k]) })) as Record<
          string,
          ort.Tensor
        >;
        const data = (name: string) => y[name]!.data as Float32Array;
        for (const name of names) {
          vsFp32.get(name)!.add(data(name), data('fp32'));
          const twin = TWIN[name as keyof typeof TWIN];
          if (twin) vsTwin.get(name)!.add(data(name), data(twin));
        }
      }
    } finally {
      await session.release();
    }
    const result: MeasuredKernels = {};
    for (const [kernel, twin] of Object.entries(TWIN) as [Exclude<Kernel, 'fp32'>, string][]) {
      const weightError = vsFp32.get(twin)!.value;
      result[kernel] = kernel.endsWith('-a32')
        ? { total: weightError, activation: 0, weight: weightError }
        : { total: vsFp32.get(kernel)!.value, activation: vsTwin.get(kernel)!.value, weight: weightError };
    }
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** max |x| and median |x| of input activations (median from a strided sample of about 200k values). */
export function activationStats(runs: readonly Float32Array[]): { maxAbs: number; medianAbs: number } {
  const total = runs.reduce((n, x) => n + x.length, 0);
  const stride = Math.max(1, Math.floor(total / 200_000));
  const sample: number[] = [];
  let maxAbs = 0;
  for (const x of runs) {
    for (let i = 0; i < x.length; i++) {
      const a = Math.abs(x[i]!);
      if (a > maxAbs) maxAbs = a;
      if (i % stride === 0) sample.push(a);
    }
  }
  sample.sort((a, b) => a - b);
  return { maxAbs, medianAbs: sample[sample.length >> 1] ?? 0 };
}
