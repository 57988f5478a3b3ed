/**
 * Pillow's antialiased two-pass resampling (libImaging/Resample.c, 8 bits per channel, 22-bit fixed-point
 * coefficients), ported because libvips' kernels differ from Pillow's enough to miss parity with HF.
 */
import { PIL_RESAMPLE } from './preprocess-config.js';

/** Fixed-point precision Pillow uses for 8-bit coefficients: 32 − 8 − 2 bits. */
const PRECISION_BITS = 22;

interface PillowFilter {
  support: number;
  weight(x: number): number;
}

const sinc = (x: number) => {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
};

const FILTERS: Record<number, PillowFilter> = {
  [PIL_RESAMPLE.box]: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  [PIL_RESAMPLE.bilinear]: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  [PIL_RESAMPLE.hamming]: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      if (a === 0) return 1;
      if (a >= 1) return 0;
      const px = a * Math.PI;
      return (Math.sin(px) / px) * (0.54 + 0.46 * Math.cos(px));
    },
  },
  [PIL_RESAMPLE.bicubic]: {
    support: 2,
    // Keys' cubic convolution with a = -0.5 (Catmull-Rom).
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  [PIL_RESAMPLE.lanczos]: {
    support: 3,
    weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0),
  },
};

interface Coefficients {
  /** Taps per output sample (the row stride of `weights`). */
  ksize: number;
  /** First input index and tap count per output sample. */
  bounds: Int32Array;
  /** Fixed-point weights, `ksize` per output sample. */
  weights: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc: the filter is stretched by the downscale factor. */
function precomputeCoefficients(inSize: number, outSize: number, filter: PillowFilter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const inv = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; Math.trunc keeps the same bounds for negative values.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * inv);
      k[x] = w;
      sum += w;
    }
    for (let x = 0; x < ksize; x++) {
      const w = x < xmax && sum !== 0 ? k[x]! / sum : 0;
      const fixed = w * (1 << PRECISION_BITS);
      weights[xx * ksize + x] = Math.trunc(w < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

const HALF = 1 << (PRECISION_BITS - 1);

function clip8(v: number): number {
  const s = v >> PRECISION_BITS;
  return s < 0 ? 0 : Math.min(s, 255);
}

/** Horizontal pass over rows [y0, y0 + rows) of a packed image. */
function resampleHorizontal(
  src: Uint8Array,
  srcWidth: number,
  channels: number,
  y0: number,
  rows: number,
  outWidth: number,
  c: Coefficients,
): Uint8Array {
  const out = new Uint8Array(outWidth * rows * channels);
  const { ksize, bounds, weights } = c;
  for (let y = 0; y < rows; y++) {
    const rowIn = (y + y0) * srcWidth * channels;
    const rowOut = y * outWidth * channels;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2]!;
      const n = bounds[xx * 2 + 1]!;
      const kOff = xx * ksize;
      const o = rowOut + xx * channels;
      if (channels === 3) {
        // The common case, unrolled: this loop is most of the preprocessing time for large photos.
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        let p = rowIn + xmin * 3;
        for (let x = 0; x < n; x++, p += 3) {
          const w = weights[kOff + x]!;
          s0 += src[p]! * w;
          s1 += src[p + 1]! * w;
          s2 += src[p + 2]! * w;
        }
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
        continue;
      }
      for (let ch = 0; ch < channels; ch++) {
        let ss = HALF;
        let p = rowIn + xmin * channels + ch;
        for (let x = 0; x < n; x++, p += channels) ss += src[p]! * weights[kOff + x]!;
        out[o + ch] = clip8(ss);
      }
    }
  }
  return out;
}

function resampleVertical(
  src: Uint8Array,
  width: number,
  channels: number,
  outHeight: number,
  c: Coefficients,
  yShift: number,
): Uint8Array {
  const stride = width * channels;
  const out = new Uint8Array(stride * outHeight);
  const { ksize, bounds, weights } = c;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2]! - yShift;
    const n = bounds[yy * 2 + 1]!;
    const kOff = yy * ksize;
    const rowOut = yy * stride;
    for (let i = 0; i < stride; i++) {
      let ss = HALF;
      let p = ymin * stride + i;
      for (let y = 0; y < n; y++, p += stride) ss += src[p]! * weights[kOff + y]!;
      out[rowOut + i] = clip8(ss);
    }
  }
  return out;
}

/** Pillow's NEAREST resize: the source pixel under each output pixel's centre. */
function resizeNearest(src: Uint8Array, w: number, h: number, ch: number, outW: number, outH: number) {
  const out = new Uint8Array(outW * outH * ch);
  const sx = w / outW;
  const sy = h / outH;
  for (let y = 0; y < outH; y++) {
    const iy = Math.min(Math.floor((y + 0.5) * sy), h - 1);
    for (let x = 0; x < outW; x++) {
      const ix = Math.min(Math.floor((x + 0.5) * sx), w - 1);
      for (let c = 0; c < ch; c++) out[(y * outW + x) * ch + c] = src[(iy * w + ix) * ch + c]!;
    }
  }
  return out;
}

/**
 * Resizes packed 8-bit pixels exactly as Pillow's `Image.resize(size, resample)` does (no reducing_gap):
 * antialiased (the kernel widens when downscaling), horizontal pass first over the rows the vertical pass needs,
 * rounding and clipping to 8 bits between the passes.
 */
export function resizePillow(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  outWidth: number,
  outHeight: number,
  resample: number = PIL_RESAMPLE.bicubic,
): Uint8Array {
  if (src.length !== width * height * channels) {
    throw new RangeError(`resizePillow: ${src.length} bytes is not ${width}×${height}×${channels}`);
  }
  if (outWidth === width && outHeight === height) return src.slice();
  if (resample === PIL_RESAMPLE.nearest)
    return resizeNearest(src, width, height, channels, outWidth, outHeight);
  const filter = FILTERS[resample];
  if (!filter) throw new RangeError(`resizePillow: unknown PIL resample filter ${resample}`);

  const horiz = precomputeCoefficients(width, outWidth, filter);
  const vert = precomputeCoefficients(height, outHeight, filter);
  const needH = outWidth !== width;
  const needV = outHeight !== height;
  let img = src;
  let yShift = 0;
  if (needH) {
    // Only the input rows some output row reads are resampled horizontally.
    const first = vert.bounds[0]!;
    const last = vert.bounds[(outHeight - 1) * 2]! + vert.bounds[(outHeight - 1) * 2 + 1]!;
    img = needV
      ? resampleHorizontal(src, width, channels, first, last - first, outWidth, horiz)
      : resampleHorizontal(src, width, channels, 0, height, outWidth, horiz);
    if (needV) yShift = first;
  }
  if (needV) img = resampleVertical(img, outWidth, channels, outHeight, vert, yShift);
  return img;
}
