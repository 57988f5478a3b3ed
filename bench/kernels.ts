/**
 * The machine's limits as onnxruntime sees them: GEMM throughput per kernel kind at the shapes BLIP-2 runs
 * (many rows for vision / encoder, one row per decoder step) and weight-streaming bandwidth. Each kernel is a
 * one-node graph built with the converter's own graph builder.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, MS_DOMAIN, TensorDataType } from '../src/convert/onnx/graph-builder.js';
import { quantizeBlockwise } from '../src/convert/quantize.js';
import { createSession, ort } from '../src/engine/ort.js';
import { seededNormalArray } from './util.js';

export type KernelKind = 'fp32' | 'nbits8' | 'nbits4' | 'dq8';

export interface KernelResult {
  kind: KernelKind;
  m: number;
  k: number;
  n: number;
  ms: number;
  /** 2·M·K·N / time */
  gops: number;
  /** weight bytes / time */
  weightGBps: number;
}

function buildKernel(
  dir: string,
  kind: KernelKind,
  m: number,
  k: number,
  n: number,
  blockSize: number,
  accuracyLevel: number,
): string {
  const path = join(dir, `${kind}-${m}x${k}x${n}.onnx`);
  const b = new GraphBuilder('kernel', `${path}.data`);
  const x = b.input('x', TensorDataType.FLOAT, [m, k]);
  const w = seededNormalArray(n * k, 1 / Math.sqrt(k), 7);
  let y: string;
  if (kind === 'fp32') {
    const t = new Float32Array(k * n);
    for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) t[c * n + r] = w[r * k + c]!;
    y = b.op('/MatMul', 'MatMul', [x, b.weight('w', t, [k, n])]);
  } else if (kind === 'dq8') {
    const q = new Int8Array(k * n);
    const scales = new Float32Array(n);
    for (let r = 0; r < n; r++) {
      let max = 0;
      for (let c = 0; c < k; c++) max = Math.max(max, Math.abs(w[r * k + c]!));
      scales[r] = max / 127 || 1;
      for (let c = 0; c < k; c++) q[c * n + r] = Math.round(w[r * k + c]! / scales[r]!);
    }
    y = b.op(
      '/DynamicQuantizeMatMul',
      'DynamicQuantizeMatMul',
      [x, b.weight('w', q, [k, n]), b.weight('s', scales, [n])],
      {},
      { domain: MS_DOMAIN },
    );
  } else {
    const bits = kind === 'nbits8' ? 8 : 4;
    const q = quantizeBlockwise(w, n, k, bits, blockSize);
    y = b.op(
      '/MatMulNBits',
      'MatMulNBits',
      [x, b.weight('w', q.packed, [n, q.blocks, q.blobSize]), b.weight('s', q.scales, [n * q.blocks])],
      { K: k, N: n, bits, block_size: blockSize, accuracy_level: accuracyLevel },
      { domain: MS_DOMAIN },
    );
  }
  b.output('y', y, TensorDataType.FLOAT, [m, n]);
  writeFileSync(path, b.finish('kernel benchmark'));
  return path;
}

function weightBytes(kind: KernelKind, k: number, n: number): number {
  return kind === 'fp32' ? 4 * k * n : kind === 'nbits4' ? (k * n) / 2 : k * n;
}

export async function measureKernel(
  kind: KernelKind,
  m: number,
  k: number,
  n: number,
  options: { threads?: number; blockSize?: number; accuracyLevel?: number; repeats?: number } = {},
): Promise<KernelResult> {
  const dir = mkdtempSync(join(tmpdir(), 'blip2-kernel-'));
  try {
    const path = buildKernel(dir, kind, m, k, n, options.blockSize ?? 32, options.accuracyLevel ?? 4);
    const session = await createSession(path, {
      graphOptimizationLevel: 'all',
      ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
    });
    const x = new ort.Tensor('float32', seededNormalArray(m * k, 1, 3), [m, k]);
    await session.run({ x });
    const times: number[] = [];
    const deadline = performance.now() + 3000;
    for (let i = 0; i < (options.repeats ?? 7) && (i < 3 || performance.now() < deadline); i++) {
      const t = performance.now();
      await session.run({ x });
      times.push(performance.now() - t);
    }
    await session.release();
    // The fastest run is the limit: slower ones only measure interference.
    const ms = Math.min(...times);
    return {
      kind,
      m,
      k,
      n,
      ms,
      gops: (2 * m * k * n) / (ms * 1e6),
      weightGBps: weightBytes(kind, k, n) / (ms * 1e6),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
