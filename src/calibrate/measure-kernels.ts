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
import * as ort from 'onnxruntime-node';
import { matMulNode } from '../convert/layers.js';
import { GraphBuilder, TensorDataType } from '../convert/onnx/graph-builder.js';
import { quantizePerChannel } from '../convert/quantize.js';
import { KERNELS, type Kernel } from '../model/precision.js';

export interface KernelErrors {
  total: number;
  /** What quantising the activations added: the kernel against its fp32-activation twin. */
  activation: number;
  /** What rounding the weights cost: the fp32-activation twin against fp32. */
  weight: number;
}

export type MeasuredKernels = Partial<Record<Kernel, KernelErrors>>;

/** int8-dynamic's weights, dequantised: the weight-only twin of DynamicQuantizeMatMul. */
function dequantizedPerChannel(weight: Float32Array, n: number, k: number): Float32Array {
  const { q, scales } = quantizePerChannel(weight, n, k);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) out[r * k + c] = q[c * n + r]! * scales[r]!;
  return out;
}

/** The twin a kernel's `activation` error is measured against. */
const WEIGHT_ONLY_TWIN: Record<Kernel, string> = {
  fp32: 'fp32',
  'int8-dynamic': 'int8-weights',
  'nbits4-a8': 'nbits4-a32',
  'nbits4-a32': 'nbits4-a32',
  'nbits8-a8': 'nbits8-a32',
  'nbits8-a32': 'nbits8-a32',
};

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function relativeRms(y: Float32Array, ref: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = y[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
  }
  return den === 0 ? (num === 0 ? 0 : Number.POSITIVE_INFINITY) : Math.sqrt(num / den);
}

/**
 * Runs every kernel (fp32 included) over the input activations of a MatMul whose weight is [n, k] (HF layout),
 * one run per chunk of rows as the model ran them (DynamicQuantizeMatMul's one scale covers one run's rows).
 * Returns each non-fp32 kernel's errors over all chunks.
 */
export async function measureKernels(
  weight: Float32Array,
  n: number,
  k: number,
  runs: readonly Float32Array[],
  blockSize: number,
  kernels: readonly Kernel[] = KERNELS,
): Promise<MeasuredKernels> {
  const dir = await mkdtemp(join(tmpdir(), 'blip2-calib-'));
  try {
    const path = join(dir, 'kernels.onnx');
    const b = new GraphBuilder('calibration', `${path}.data`);
    const input = b.input('x', TensorDataType.FLOAT, ['rows', k]);
    const variants = new Map<string, () => string>([
      ['fp32', () => matMulNode(b, '/fp32', input, { weight, n, k }, 'fp32', blockSize)],
      [
        'int8-weights',
        () =>
          matMulNode(
            b,
            '/int8-weights',
            input,
            { weight: dequantizedPerChannel(weight, n, k), n, k },
            'fp32',
            0,
          ),
      ],
    ]);
    for (const kernel of KERNELS) {
      if (kernel !== 'fp32')
        variants.set(kernel, () => matMulNode(b, `/${kernel}`, input, { weight, n, k }, kernel, blockSize));
    }
    const needed = new Set<string>(['fp32']);
    for (const kernel of kernels) {
      needed.add(kernel);
      needed.add(WEIGHT_ONLY_TWIN[kernel]);
    }
    for (const name of needed) b.output(name, variants.get(name)!(), TensorDataType.FLOAT, ['rows', n]);
    await writeFile(path, b.finish('calibration: one MatMul in every kernel'));
    const session = await ort.InferenceSession.create(path, {
      graphOptimizationLevel: 'all',
      enableCpuMemArena: false,
    });
    const outputs = new Map<string, Float32Array[]>([...needed].map((name) => [name, []]));
    try {
      for (const x of runs) {
        const out = await session.run({ x: new ort.Tensor('float32', x, [x.length / k, k]) });
        for (const name of needed) outputs.get(name)!.push(out[name]!.data as Float32Array);
      }
    } finally {
      await session.release();
    }
    const y = (name: string) => concat(outputs.get(name)!);
    const ref = y('fp32');
    const result: MeasuredKernels = {};
    for (const kernel of kernels) {
      if (kernel === 'fp32') continue;
      const twin = WEIGHT_ONLY_TWIN[kernel];
      const total = relativeRms(y(kernel), ref);
      result[kernel] = {
        total,
        activation: twin === kernel ? 0 : relativeRms(y(kernel), y(twin)),
        weight: twin === kernel ? total : relativeRms(y(twin), ref),
      };
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
