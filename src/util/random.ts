/**
 * A small seeded PRNG whose output is the same on every machine and every JavaScript engine.
 *
 * Generator: xoshiro128** (32-bit state words, so it runs on plain int32 arithmetic without BigInt), seeded
 * through a splitmix32-style mixer from a numeric seed and an optional stream name. Normal samples use
 * Marsaglia's polar method with our own logarithm: `Math.log` is not required to be correctly rounded and may
 * differ between engines and platforms, whereas `+ - * /` and `Math.sqrt` are exact IEEE-754 operations. That
 * keeps synthetic checkpoints byte-identical wherever they are generated.
 */

const TWO_POW_32 = 4294967296;
const INV_TWO_POW_32 = 1 / TWO_POW_32;
const INV_TWO_POW_53 = 1 / 9007199254740992;
const SQRT_HALF = Math.SQRT1_2;
const LN2 = Math.LN2;

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** One step of a splitmix32-style mixer: a well-distributed 32-bit value from any 32-bit input. */
function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/** FNV-1a over the UTF-16 code units of a string: turns a stream name into 32 bits of seed. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  }
  return h >>> 0;
}

/**
 * Natural logarithm of a positive finite number using only exactly-rounded operations, so the result is the
 * same bit pattern everywhere. Accurate to about 1e-15 relative; meant for sampling, not for numerics.
 */
export function portableLog(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) {
    if (x === 0) return Number.NEGATIVE_INFINITY;
    if (x === Number.POSITIVE_INFINITY) return x;
    return Number.NaN;
  }
  // Scale by exact powers of two into [sqrt(1/2), sqrt(2)), where the atanh series converges fast.
  let m = x;
  let e = 0;
  while (m >= 2 * SQRT_HALF * 2 ** 32) {
    m *= 2 ** -32;
    e += 32;
  }
  while (m < SQRT_HALF * 2 ** -32) {
    m *= 2 ** 32;
    e -= 32;
  }
  while (m >= 2 * SQRT_HALF) {
    m *= 0.5;
    e += 1;
  }
  while (m < SQRT_HALF) {
    m *= 2;
    e -= 1;
  }
  // ln(m) = 2 atanh(z) with z = (m-1)/(m+1), |z| <= 0.1716: nine odd terms reach double precision.
  const z = (m - 1) / (m + 1);
  const z2 = z * z;
  let series = 1 / 19;
  for (let k = 17; k >= 1; k -= 2) series = 1 / k + z2 * series;
  return 2 * z * series + e * LN2;
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare = 0;
  private hasSpare = false;

  /**
   * @param seed any safe integer (negative allowed); its low and high 32 bits both matter.
   * @param stream optional name giving an independent sequence for the same seed (e.g. a tensor name).
   */
  constructor(seed: number, stream = '') {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    let x = mix32(lo ^ mix32(hi ^ 0x5bd1e995) ^ mix32(hashString(stream) ^ 0x27d4eb2f));
    const next = (): number => {
      x = mix32(x);
      return x;
    };
    this.s0 = next() | 0;
    this.s1 = next() | 0;
    this.s2 = next() | 0;
    this.s3 = next() | 0;
    // xoshiro must not start from the all-zero state.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next raw 32-bit output as an unsigned integer. */
  nextUint32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    this.s2 ^= s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) * INV_TWO_POW_53;
  }

  /** Uniform integer in [0, n) for 0 < n <= 2^32 (tiny modulo bias is irrelevant for our uses). */
  nextInt(n: number): number {
    return Math.floor(this.nextUint32() * INV_TWO_POW_32 * n);
  }

  /** A standard normal sample, N(0, 1). */
  nextNormal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    for (;;) {
      const u = this.nextUint32() * (2 * INV_TWO_POW_32) - 1;
      const v = this.nextUint32() * (2 * INV_TWO_POW_32) - 1;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const f = Math.sqrt((-2 * portableLog(s)) / s);
      this.spare = v * f;
      this.hasSpare = true;
      return u * f;
    }
  }

  /**
   * Fills `out` with `mean + std * N(0, 1)`. Filling in pieces gives the same values as one call over the
   * whole range, so large tensors can be generated chunk by chunk.
   */
  fillNormal<T extends Float32Array | Float64Array>(out: T, std = 1, mean = 0): T {
    const n = out.length;
    let i = 0;
    if (n > 0 && this.hasSpare) {
      out[i++] = mean + std * this.spare;
      this.hasSpare = false;
    }
    while (i < n) {
      const u = this.nextUint32() * (2 * INV_TWO_POW_32) - 1;
      const v = this.nextUint32() * (2 * INV_TWO_POW_32) - 1;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const f = Math.sqrt((-2 * portableLog(s)) / s);
      out[i++] = mean + std * (u * f);
      if (i < n) {
        out[i++] = mean + std * (v * f);
      } else {
        this.spare = v * f;
        this.hasSpare = true;
      }
    }
    return out;
  }
}
