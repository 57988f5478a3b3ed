/**
 * Image bytes → BLIP-2 `pixel_values` [1, 3, H, W], as transformers' BlipImageProcessor (4.40.2) computes them.
 *
 * sharp (libvips) decodes and colour-manages; the resize is a port of Pillow's antialiased two-pass resampling
 * (Resample.c, 8 bits per channel with 22-bit fixed-point coefficients) because libvips' kernels differ from
 * Pillow's enough to miss parity (docs/preprocessing.md has the numbers). Deliberate departures from HF are
 * EXIF orientation (applied) and colour management (embedded ICC profiles are honoured); both are documented.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { formatBytes } from '../util/bytes.js';
import { describeNonImage } from '../util/file-sniff.js';
import { ImageError } from './errors.js';
import { resizePillow } from './pillow-resize.js';
import {
  BLIP_PREPROCESSOR_DEFAULTS,
  PREPROCESS_VERSION,
  type PreprocessorConfig,
} from './preprocess-config.js';

export { describeNonImage } from '../util/file-sniff.js';
export { resizePillow } from './pillow-resize.js';
export {
  BLIP_PREPROCESSOR_DEFAULTS,
  PIL_RESAMPLE,
  PREPROCESS_VERSION,
  type PreprocessorConfig,
  parsePreprocessorConfig,
} from './preprocess-config.js';
// ---------------------------------------------------------------------------------------------------------------
// Options and result

export type RgbColour = { r: number; g: number; b: number };

/**
 * 'pillow' (default): our port of Pillow's resampling, the one that matches HF.
 * 'sharp-*': libvips' resize with that kernel; kept so the parity gap can be measured, not for normal use.
 */
export type Resampler = 'pillow' | 'sharp-cubic' | 'sharp-mitchell' | 'sharp-lanczos3';

export interface PreprocessOptions {
  /** Reject inputs larger than this many bytes. Default 20 MiB. */
  maxBytes?: number;
  /** Reject images with more pixels (width × height) than this; passed to sharp's limitInputPixels. Default 100 MP. */
  maxInputPixels?: number;
  /**
   * Composite transparent images onto this colour (a CSS colour string such as '#ffffff' or 'white', or
   * {r, g, b}). Default: drop alpha and keep the colour stored under transparent pixels, as HF does.
   */
  flattenAlpha?: string | RgbColour;
  /** Rotate/flip per EXIF Orientation so the model sees what the person sees. Default true (HF: false). */
  autoOrient?: boolean;
  /**
   * Ignore embedded ICC profiles, as PIL (and so HF) does: an Adobe RGB photo then keeps its raw numbers instead
   * of being converted to sRGB. Default false. CMYK still goes through libvips' built-in CMYK profile.
   */
  ignoreIccProfile?: boolean;
  resampler?: Resampler;
  /**
   * Larger images (after orientation) are first shrunk by libvips, never below 4× the target size, so the
   * Pillow-exact resize stays fast and memory-bounded. Default 24 MP; a 12 MP phone photo is resized exactly.
   * Not applied when alpha is dropped (libvips would resize premultiplied pixels).
   */
  maxResamplePixels?: number;
}

export interface PreprocessInfo {
  /** Decoder sharp used: 'jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', ... */
  format: string;
  /** Stored size, before orientation. */
  width: number;
  height: number;
  /** EXIF Orientation tag (1-8), 1 when absent. */
  orientation: number;
  /** True when the orientation changed the pixels (tag other than 1 and autoOrient on). */
  orientationApplied: boolean;
  /** Size after orientation, before resizing. */
  uprightWidth: number;
  uprightHeight: number;
  /** Size handed to the resampler: the upright size, or smaller when libvips pre-shrank a huge image. */
  decodedWidth: number;
  decodedHeight: number;
  /** Input colour space as libvips names it: 'srgb', 'b-w', 'cmyk', 'rgb16', 'grey16', ... */
  colourSpace: string;
  /** Bits per sample of the decoded input (8 or 16). */
  bitDepth: number;
  hasIccProfile: boolean;
  palette: boolean;
  hadAlpha: boolean;
  alpha: 'none' | 'dropped' | 'flattened';
  /** Frames (pages) in the file; only the first is used. */
  frames: number;
  progressive: boolean;
  /** The file ended early (e.g. a cut-off JPEG) and was decoded as far as it goes. */
  truncated: boolean;
  /** Non-fatal decoder warnings. */
  warnings: string[];
  resampler: Resampler;
}

export interface PreprocessResult {
  data: Float32Array;
  dims: [1, 3, number, number];
  info: PreprocessInfo;
}

export const DEFAULT_MAX_BYTES = 20 * 1024 * 1024;
export const DEFAULT_MAX_INPUT_PIXELS = 100_000_000;
export const DEFAULT_MAX_RESAMPLE_PIXELS = 24_000_000;

/** Formats we accept from sharp's decoders. SVG is refused: it is a document that may reference other files. */
const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif', 'jp2', 'jxl']);

const SUPPORTED_LIST = 'JPEG, PNG, WebP or GIF';

// ---------------------------------------------------------------------------------------------------------------
// Errors

const formatMp = (pixels: number) => `${(pixels / 1e6).toFixed(pixels < 10e6 ? 1 : 0)} megapixels`;

/**
 * Image formats some libvips builds decode (sharp's prebuilt one does not): let sharp try before refusing them.
 * SVG is not among them: a drawing is a document that may pull in other files, so it is always refused.
 */
const MAYBE_DECODABLE = new Set(['a HEIC photo', 'a BMP image', 'a Photoshop document']);
const IMAGE_LIKE = new Set([...MAYBE_DECODABLE, 'an SVG drawing']);

function notAnImage(what: string | undefined, cause?: unknown): ImageError {
  const user =
    what === undefined
      ? `That doesn't look like an image I can read. Please send a picture (${SUPPORTED_LIST}).`
      : IMAGE_LIKE.has(what)
        ? `That looks like ${what}, which I can't read. Could you send it as ${SUPPORTED_LIST}?`
        : `That looks like ${what}, not an image. Please send a picture (${SUPPORTED_LIST}).`;
  return new ImageError('unsupported_type', user, { cause });
}

function corrupt(cause?: unknown): ImageError {
  return new ImageError(
    'corrupt',
    "Sorry, I couldn't read that image; the file seems to be damaged. Could you send it again?",
    { cause },
  );
}

function tooManyPixels(pixels: number | undefined, limit: number, cause?: unknown): ImageError {
  const size = pixels ? ` (${formatMp(pixels)})` : '';
  return new ImageError(
    'too_many_pixels',
    `That image is too big${size}. Please send one under ${formatMp(limit)}.`,
    { cause },
  );
}

function fromSharpError(err: unknown, bytes: Uint8Array, maxInputPixels: number): ImageError {
  if (err instanceof ImageError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(message)) return tooManyPixels(undefined, maxInputPixels, err);
  if (/unsupported image format/i.test(message)) return notAnImage(describeNonImage(bytes), err);
  return corrupt(err);
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding to 8-bit sRGB

export interface DecodedRgb {
  /** Packed RGB, row-major, 3 bytes per pixel. */
  data: Uint8Array;
  width: number;
  height: number;
  info: Omit<PreprocessInfo, 'resampler'>;
}

function checkColour(c: string | RgbColour): string | RgbColour {
  if (typeof c === 'string') {
    if (c.trim() === '') throw new TypeError('flattenAlpha: empty colour');
    return c;
  }
  for (const k of ['r', 'g', 'b'] as const) {
    const v = c[k];
    if (!Number.isInteger(v) || v < 0 || v > 255) {
      throw new TypeError(`flattenAlpha.${k} must be an integer 0-255, got ${v}`);
    }
  }
  return { r: c.r, g: c.g, b: c.b };
}

/**
 * Decodes the first frame to packed 8-bit sRGB at full size: grayscale is expanded, palettes resolved, CMYK and
 * other tagged images converted through their ICC profile (a built-in CMYK profile when none is embedded),
 * 16-bit reduced to 8, alpha dropped or flattened, EXIF orientation applied unless `autoOrient` is false.
 */
export async function decodeToRgb(
  bytes: Uint8Array,
  options: PreprocessOptions = {},
  /** The final size, when a pre-shrink of huge images (see `maxResamplePixels`) is welcome. */
  target?: { width: number; height: number },
): Promise<DecodedRgb> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxInputPixels = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const autoOrient = options.autoOrient ?? true;
  const flatten = options.flattenAlpha === undefined ? undefined : checkColour(options.flattenAlpha);

  if (!(bytes instanceof Uint8Array)) throw new TypeError('preprocessImage: expected the image bytes');
  if (bytes.length === 0) {
    throw new ImageError('empty', 'That image file is empty. Could you send it again?');
  }
  if (bytes.length > maxBytes) {
    throw new ImageError(
      'too_large',
      `That image is too large (${formatBytes(bytes.length)}). Please send one under ${formatBytes(maxBytes)}.`,
    );
  }
  // Documents, archives, media and text never reach libvips.
  const looksLike = describeNonImage(bytes);
  if (looksLike && !MAYBE_DECODABLE.has(looksLike)) throw notAnImage(looksLike);

  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Decode as far as the data goes (failOn 'none'): a cut-off photo is still worth answering about. Truncation
  // shows up as a libvips warning, which we surface in info.
  const inputOptions = {
    failOn: 'none' as const,
    limitInputPixels: maxInputPixels,
    autoOrient,
    ignoreIcc: options.ignoreIccProfile ?? false,
    page: 0,
    pages: 1,
  };

  let meta: Metadata;
  try {
    // Only the header is read here, so no pixel limit: checking it ourselves lets the message give the size.
    meta = await sharp(buffer, { ...inputOptions, limitInputPixels: false }).metadata();
  } catch (err) {
    if (looksLike) throw notAnImage(looksLike, err);
    throw fromSharpError(err, bytes, maxInputPixels);
  }
  if (!ACCEPTED_FORMATS.has(meta.format)) {
    throw notAnImage(looksLike ?? `a ${meta.format.toUpperCase()} file`);
  }
  const width = meta.width;
  const height = meta.height;
  if (!width || !height) throw corrupt();
  if (width * height > maxInputPixels) throw tooManyPixels(width * height, maxInputPixels);

  const orientation = meta.orientation ?? 1;
  const warnings: string[] = [];
  const pipeline = sharp(buffer, inputOptions).on('warning', (w: string) => {
    for (const line of String(w).split('\n')) {
      const t = line.trim();
      // libvips adds a summary line ("read gave 1 warnings") to each real warning.
      if (t && !/^read gave \d+ warnings?$/.test(t)) warnings.push(t);
    }
  });
  if (meta.hasAlpha) {
    if (flatten) pipeline.flatten({ background: flatten });
    else pipeline.removeAlpha();
  }
  pipeline.toColourspace('srgb');

  const turned = autoOrient && orientation >= 5;
  const uprightWidth = turned ? height : width;
  const uprightHeight = turned ? width : height;
  const maxResample = options.maxResamplePixels ?? DEFAULT_MAX_RESAMPLE_PIXELS;
  // libvips removes alpha after resizing, from premultiplied pixels, which would lose the colour HF keeps under
  // transparent pixels: images whose alpha is dropped are never pre-shrunk.
  const alphaDropped = meta.hasAlpha && !flatten;
  if (target && !alphaDropped && uprightWidth * uprightHeight > maxResample) {
    const f = Math.sqrt((uprightWidth * uprightHeight) / maxResample);
    const fx = Math.max(1, Math.min(f, uprightWidth / (4 * target.width)));
    const fy = Math.max(1, Math.min(f, uprightHeight / (4 * target.height)));
    if (fx > 1 || fy > 1) {
      pipeline.resize(Math.round(uprightWidth / fx), Math.round(uprightHeight / fy), {
        fit: 'fill',
        kernel: 'lanczos3',
      });
    }
  }

  let data: Buffer;
  let outInfo: OutputInfo;
  try {
    ({ data, info: outInfo } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw fromSharpError(err, bytes, maxInputPixels);
  }
  if (outInfo.channels !== 3) {
    // removeAlpha/toColourspace should always leave RGB; anything else is a libvips surprise, not user error.
    throw new Error(`decodeToRgb: expected 3 channels after conversion, got ${outInfo.channels}`);
  }
  const bitDepth = /16|ushort/.test(`${meta.depth} ${meta.space}`) ? 16 : 8;
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: outInfo.width,
    height: outInfo.height,
    info: {
      format: meta.format,
      width,
      height,
      orientation,
      orientationApplied: autoOrient && orientation !== 1,
      uprightWidth,
      uprightHeight,
      decodedWidth: outInfo.width,
      decodedHeight: outInfo.height,
      colourSpace: meta.space ?? 'unknown',
      bitDepth,
      hasIccProfile: !!meta.icc,
      palette: !!meta.isPalette,
      hadAlpha: !!meta.hasAlpha,
      alpha: meta.hasAlpha ? (flatten ? 'flattened' : 'dropped') : 'none',
      frames: meta.pages ?? 1,
      progressive: !!meta.isProgressive,
      truncated: warnings.some((w) => /premature end|truncat|unexpected end|short read/i.test(w)),
      warnings,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Rescale, normalise, HWC → CHW

/**
 * `((u8 * rescale_factor) as float32 − mean) / std` in float32, HWC → CHW, as HF's rescale (float64 product, then
 * cast) and normalize (float32) do.
 */
export function toPixelValues(rgb: Uint8Array, width: number, height: number, config: PreprocessorConfig) {
  const plane = width * height;
  if (rgb.length !== plane * 3)
    throw new RangeError(`toPixelValues: ${rgb.length} bytes is not ${width}×${height}×3`);
  const out = new Float32Array(plane * 3);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const mean = f(config.imageMean[c]!);
    const std = f(config.imageStd[c]!);
    // 256 possible inputs per channel: a table gives identical values and saves the per-pixel arithmetic.
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      let x = config.doRescale ? f(v * config.rescaleFactor) : v;
      if (config.doNormalize) x = f(f(x - mean) / std);
      table[v] = x;
    }
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = table[rgb[i * 3 + c]!]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

const SHARP_KERNELS = {
  'sharp-cubic': 'cubic',
  'sharp-mitchell': 'mitchell',
  'sharp-lanczos3': 'lanczos3',
} as const;

async function resizeWithSharp(decoded: DecodedRgb, outW: number, outH: number, resampler: Resampler) {
  const kernel = SHARP_KERNELS[resampler as keyof typeof SHARP_KERNELS];
  const out = await sharp(decoded.data, {
    raw: { width: decoded.width, height: decoded.height, channels: 3 },
  })
    .resize(outW, outH, { fit: 'fill', kernel })
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Image bytes → `pixel_values` float32 [1, 3, H, W] per the model's preprocessor config.
 * Throws ImageError (code too_large, too_many_pixels, unsupported_type, corrupt, empty) with a `userMessage`
 * fit for a chat reply.
 */
export async function preprocessImage(
  bytes: Uint8Array,
  config: PreprocessorConfig = BLIP_PREPROCESSOR_DEFAULTS,
  options: PreprocessOptions = {},
): Promise<PreprocessResult> {
  const resampler = options.resampler ?? 'pillow';
  const decoded = await decodeToRgb(bytes, options, config.doResize ? config.size : undefined);
  let { width, height } = decoded;
  let rgb = decoded.data;
  if (config.doResize && (width !== config.size.width || height !== config.size.height)) {
    const { width: outW, height: outH } = config.size;
    rgb =
      resampler === 'pillow'
        ? resizePillow(rgb, width, height, 3, outW, outH, config.resample)
        : await resizeWithSharp(decoded, outW, outH, resampler);
    width = outW;
    height = outH;
  }
  return {
    data: toPixelValues(rgb, width, height, config),
    dims: [1, 3, height, width],
    info: { ...decoded.info, resampler },
  };
}

/**
 * The preprocessing part of an image-cache key: PREPROCESS_VERSION plus every option that changes the pixels.
 * (The preprocessor config belongs to the model, which the key names separately.)
 */
export function preprocessCacheTag(options: PreprocessOptions = {}): string {
  const parts = [PREPROCESS_VERSION];
  if (options.autoOrient === false) parts.push('orient=off');
  if (options.ignoreIccProfile) parts.push('icc=off');
  if (options.flattenAlpha !== undefined) {
    const c = options.flattenAlpha;
    parts.push(`flatten=${typeof c === 'string' ? c.trim().toLowerCase() : `${c.r},${c.g},${c.b}`}`);
  }
  if (options.resampler && options.resampler !== 'pillow') parts.push(`resampler=${options.resampler}`);
  if (options.maxResamplePixels !== undefined && options.maxResamplePixels !== DEFAULT_MAX_RESAMPLE_PIXELS) {
    parts.push(`maxResample=${options.maxResamplePixels}`);
  }
  return parts.join(';');
}
