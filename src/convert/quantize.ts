/**
 * Block-wise symmetric weight quantisation in the layout of onnxruntime's `MatMulNBits` (com.microsoft):
 * B is [N, blocks, blockSize·bits/8] uint8 with codes packed low bits first along K, scales are [N·blocks]
 * float32, and the zero point is the op's default (8 for 4 bits, 128 for 8 bits), so none is stored.
 */

export type QuantBits = 4 | 8;

export interface QuantizedWeight {
  /** [N, blocks, blobSize] */
  packed: Uint8Array;
  /** [N * blocks] */
  scales: Float32Array;
  n: number;
  k: number;
  blocks: number;
  blobSize: number;
}

/** Quantises a Linear weight stored as HF does, [N = out, K = in] row-major. */
export function quantizeBlockwise(
  weight: Float32Array,
  n: number,
  k: number,
  bits: QuantBits,
  blockSize: number,
): QuantizedWeight {
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new Error(`quantisation block size must be a power of two ≥ 16, got ${blockSize}`);
  }
  if (weight.length !== n * k) throw new Error(`weight has ${weight.length} values, expected ${n}×${k}`);
  const blocks = Math.ceil(k / blockSize);
  const blobSize = (blockSize * bits) / 8;
  const packed = new Uint8Array(n * blocks * blobSize);
  const scales = new Float32Array(n * blocks);
  const zeroPoint = bits === 4 ? 8 : 128;
  const qmax = bits === 4 ? 7 : 127;
  const codeMax = bits === 4 ? 15 : 255;
  const codes = new Uint8Array(blockSize);

  for (let row = 0; row < n; row++) {
    const rowBase = row * k;
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const end = Math.min(start + blockSize, k);
      let absMax = 0;
      for (let i = start; i < end; i++) absMax = Math.max(absMax, Math.abs(weight[rowBase + i]!));
      const scale = absMax / qmax;
      scales[row * blocks + b] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      // Padding past K quantises to the zero point, i.e. a weight of exactly 0.
      codes.fill(zeroPoint);
      for (let i = start; i < end; i++) {
        const q = Math.round(weight[rowBase + i]! * inv) + zeroPoint;
        codes[i - start] = Math.max(0, Math.min(q, codeMax));
      }
      const blobBase = (row * blocks + b) * blobSize;
      if (bits === 8) {
        packed.set(codes, blobBase);
      } else {
        for (let j = 0; j < blobSize; j++) packed[blobBase + j] = codes[2 * j]! | (codes[2 * j + 1]! << 4);
      }
    }
  }
  return { packed, scales, n, k, blocks, blobSize };
}

/** The float weight [N, K] a block-quantised one stands for: what MatMulNBits computes with at fp32 activations. */
export function dequantizeBlockwise(q: QuantizedWeight, bits: QuantBits, blockSize: number): Float32Array {
  const out = new Float32Array(q.n * q.k);
  const zeroPoint = bits === 4 ? 8 : 128;
  for (let row = 0; row < q.n; row++) {
    for (let b = 0; b < q.blocks; b++) {
      const scale = q.scales[row * q.blocks + b]!;
      const blobBase = (row * q.blocks + b) * q.blobSize;
      const end = Math.min(blockSize, q.k - b * blockSize);
      const outBase = row * q.k + b * blockSize;
      for (let i = 0; i < end; i++) {
        const code =
          bits === 8 ? q.packed[blobBase + i]! : (q.packed[blobBase + (i >> 1)]! >> ((i & 1) * 4)) & 0xf;
        out[outBase + i] = (code - zeroPoint) * scale;
      }
    }
  }
  return out;
}

/** Per-output-channel symmetric int8 weights, transposed to [K, N] as DynamicQuantizeMatMul takes them. */
export function quantizePerChannel(
  w: Float32Array,
  n: number,
  k: number,
): { q: Int8Array; scales: Float32Array } {
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

/** The float weight [N, K] per-channel int8 weights ([K, N] codes) stand for. */
export function dequantizePerChannel(q: Int8Array, scales: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) out[r * k + c] = q[c * n + r]! * scales[r]!;
  return out;
}
