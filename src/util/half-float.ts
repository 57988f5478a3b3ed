/** IEEE half-precision (F16) and bfloat16 (BF16) ↔ float32, as safetensors and ONNX store them. */

let halfTable: Float32Array | undefined;

/** All 65,536 half-precision values as float32 (256 KB, built once): exact and faster than bit twiddling. */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let value: number;
    if (exp === 0) value = mant * 2 ** -24;
    else if (exp === 31) value = mant === 0 ? Number.POSITIVE_INFINITY : Number.NaN;
    else value = (1 + mant / 1024) * 2 ** (exp - 15);
    table[h] = sign * value;
  }
  halfTable = table;
  return table;
}

/** IEEE half-precision bits → float32. */
export function f16ToF32(bits: Uint16Array, out = new Float32Array(bits.length)): Float32Array {
  const table = halfToFloatTable();
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

/** bfloat16 bits → float32 (exact: bfloat16 is the top half of a float32). */
export function bf16ToF32(bits: Uint16Array, out = new Float32Array(bits.length)): Float32Array {
  const u32 = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i]! << 16;
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half bits, round to nearest even (overflow → ±Inf, NaN stays NaN). */
export function f32ToF16Bits(values: ArrayLike<number>, out = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) {
    f32Scratch[0] = values[i]!;
    const x = u32Scratch[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) {
      h = sign | 0x7c00 | (mant ? 0x200 : 0);
    } else {
      const e = exp - 127 + 15;
      if (e >= 31) {
        h = sign | 0x7c00;
      } else if (e <= 0) {
        if (e < -10) {
          h = sign;
        } else {
          // Subnormal half: shift the implicit-one mantissa right and round to nearest even.
          const m = mant | 0x800000;
          const shift = 14 - e;
          const half = 1 << (shift - 1);
          const rest = m & ((1 << shift) - 1);
          let r = m >>> shift;
          if (rest > half || (rest === half && r & 1)) r += 1;
          h = sign | r;
        }
      } else {
        let r = (e << 10) | (mant >>> 13);
        const rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r += 1; // may carry into the exponent: still correct
        h = sign | r;
      }
    }
    out[i] = h;
  }
  return out;
}

/** float32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16Bits(values: ArrayLike<number>, out = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) {
    f32Scratch[0] = values[i]!;
    const x = u32Scratch[0]!;
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
      out[i] = (x >>> 16) | 0x40;
    } else {
      out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
  return out;
}
