/**
 * Image bytes → BLIP-2 `pixel_values` [1, 3, H, W], as transformers' BlipImageProcessor (4.40.2) computes them.
 *
 * sharp (libvips) decodes and colour-manages; the resize is a port of Pillow's antialiased two-pass resampling
 * (Resample.c, 8 bits per channel with 22-bit fixed-point coefficients) because libvips' kernels differ from
 * Pillow's enough to miss parity (docs/preprocessing.md has the numbers). Deliberate departures from HF are
 * EXIF orientation (applied) and colour management (embedded ICC profiles are honoured); both are documented.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { ImageError } from './errors.js';

/**
 * Part of the image-cache key: bump the leading tag whenever our code could produce other pixels for the same bytes
 * and options (decoder settings, colour handling, resampler, normalisation). The libvips version is included
 * because a decoder upgrade can change decoded pixels too.
 */
export const PREPROCESS_VERSION = `pp1-pillow-aa;vips-${sharp.versions.vips}`;

/** PIL resampling filter codes, as `preprocessor_config.json` stores them in `resample`. */
export const PIL_RESAMPLE = {
  nearest: 0,
  lanczos: 1,
  bilinear: 2,
  bicubic: 3,
  box: 4,
  hamming: 5,
} as const;

export interface PreprocessorConfig {
  doConvertRgb: boolean;
  doResize: boolean;
  doRescale: boolean;
  doNormalize: boolean;
  size: { height: number; width: number };
  /** A PIL filter code (see PIL_RESAMPLE); BLIP uses 3, bicubic. */
  resample: number;
  rescaleFactor: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** BlipImageProcessor's constructor defaults (transformers 4.40.2). */
export const BLIP_PREPROCESSOR_DEFAULTS: Readonly<PreprocessorConfig> = Object.freeze({
  doConvertRgb: true,
  doResize: true,
  doRescale: true,
  doNormalize: true,
  size: { height: 224, width: 224 },
  resample: PIL_RESAMPLE.bicubic,
  rescaleFactor: 1 / 255,
  imageMean: CLIP_MEAN,
  imageStd: CLIP_STD,
});

class PreprocessorConfigError extends Error {
  override name = 'PreprocessorConfigError';
}

function fail(message: string): never {
  throw new PreprocessorConfigError(`preprocessor_config.json: ${message}`);
}

function readBool(json: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') fail(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function readTriple(json: Record<string, unknown>, key: string, fallback: [number, number, number]) {
  const v = json[key];
  if (v === undefined || v === null) return [...fallback] as [number, number, number];
  // HF broadcasts a single number to every channel.
  if (typeof v === 'number' && Number.isFinite(v)) return [v, v, v] as [number, number, number];
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    fail(`"${key}" must be a list of 3 numbers (one per RGB channel), got ${JSON.stringify(v)}`);
  }
  return [v[0], v[1], v[2]] as [number, number, number];
}

function readSize(v: unknown): { height: number; width: number } {
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 8192;
  if (v === undefined || v === null) return { ...BLIP_PREPROCESSOR_DEFAULTS.size };
  // get_size_dict(default_to_square=True): a bare int means a square.
  if (ok(v)) return { height: v, width: v };
  if (typeof v === 'object' && v !== null) {
    const s = v as Record<string, unknown>;
    if (ok(s.height) && ok(s.width)) return { height: s.height, width: s.width };
  }
  return fail(
    `"size" must be {"height": H, "width": W} (BLIP resizes to an exact size), got ${JSON.stringify(v)}`,
  );
}

/**
 * Validates a parsed `preprocessor_config.json` and fills in BlipImageProcessor's defaults for missing keys.
 * Rejects settings BLIP's processor does not have (a crop, a shortest-edge size) rather than ignoring them.
 */
export function parsePreprocessorConfig(json: unknown): PreprocessorConfig {
  if (json === undefined || json === null) return structuredClone(BLIP_PREPROCESSOR_DEFAULTS);
  if (typeof json !== 'object' || Array.isArray(json)) fail('expected a JSON object');
  const j = json as Record<string, unknown>;
  const type = j.image_processor_type ?? j.feature_extractor_type;
  if (type !== undefined && (typeof type !== 'string' || !/^Blip/.test(type))) {
    fail(`image_processor_type ${JSON.stringify(type)} is not a BLIP image processor`);
  }
  if (j.do_center_crop === true) fail('"do_center_crop" is not part of BLIP preprocessing');
  const resample = j.resample ?? BLIP_PREPROCESSOR_DEFAULTS.resample;
  if (typeof resample !== 'number' || !Object.values(PIL_RESAMPLE).includes(resample as 0)) {
    fail(`"resample" must be a PIL filter code 0-5, got ${JSON.stringify(resample)}`);
  }
  const rescaleFactor = j.rescale_factor ?? BLIP_PREPROCESSOR_DEFAULTS.rescaleFactor;
  if (typeof rescaleFactor !== 'number' || !Number.isFinite(rescaleFactor) || rescaleFactor <= 0) {
    fail(`"rescale_factor" must be a positive number, got ${JSON.stringify(rescaleFactor)}`);
  }
  const imageStd = readTriple(j, 'image_std', CLIP_STD);
  if (imageStd.some((s) => s === 0)) fail('"image_std" must not contain 0');
  return {
    doConvertRgb: readBool(j, 'do_convert_rgb', true),
    doResize: readBool(j, 'do_resize', true),
    doRescale: readBool(j, 'do_rescale', true),
    doNormalize: readBool(j, 'do_normalize', true),
    size: readSize(j.size),
    resample,
    rescaleFactor,
    imageMean: readTriple(j, 'image_mean', CLIP_MEAN),
    imageStd,
  };
}

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
// Sniffing: name what a non-image upload looks like, so the reply can say so

const ascii = (bytes: Uint8Array, start: number, end: number) =>
  String.fromCharCode(...bytes.subarray(start, Math.min(end, bytes.length)));

const startsWith = (bytes: Uint8Array, sig: number[], offset = 0) =>
  bytes.length >= offset + sig.length && sig.every((b, i) => bytes[offset + i] === b);

/** What a known non-image (or unsupported image) file looks like, e.g. "a PDF"; undefined if not recognised. */
export function describeNonImage(bytes: Uint8Array): string | undefined {
  if (ascii(bytes, 0, 5) === '%PDF-') return 'a PDF';
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04])) return 'a ZIP archive (or an Office document)';
  if (startsWith(bytes, [0x1f, 0x8b])) return 'a compressed (gzip) file';
  if (startsWith(bytes, [0x1a, 0x45, 0xdf, 0xa3])) return 'a video (WebM/Matroska)';
  if (ascii(bytes, 0, 4) === 'OggS' || ascii(bytes, 0, 4) === 'fLaC' || ascii(bytes, 0, 3) === 'ID3') {
    return 'an audio file';
  }
  if (ascii(bytes, 0, 4) === 'RIFF') {
    const kind = ascii(bytes, 8, 12);
    if (kind === 'WAVE') return 'an audio file';
    if (kind === 'AVI ') return 'a video';
  }
  if (ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12);
    if (/^(heic|heix|hevc|heim|heis|hevm|hevs)/.test(brand)) return 'a HEIC photo';
    if (!/^(avif|avis|mif1|msf1)/.test(brand)) return 'a video';
  }
  if (ascii(bytes, 0, 4) === '8BPS') return 'a Photoshop document';
  if (startsWith(bytes, [0x7f, 0x45, 0x4c, 0x46])) return 'a program';

  const head = new TextDecoder('utf-8', { fatal: false })
    .decode(bytes.subarray(0, 1024))
    .replace(/^\uFEFF/, '')
    .trimStart()
    .toLowerCase();
  if (
    head.startsWith('<!doctype html') ||
    head.startsWith('<html') ||
    /^<(head|body|meta|script)\b/.test(head)
  ) {
    return 'a web page (HTML)';
  }
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) return 'an SVG drawing';
  if (head.startsWith('<?xml')) return 'an XML document';
  if (looksLikeText(bytes.subarray(0, 4096))) {
    return head.startsWith('{') || head.startsWith('[') ? 'JSON text' : 'text';
  }
  // Two-byte signatures last, so that text starting with these letters is not mistaken for them.
  const dibHeaderSize = bytes.length >= 18 ? bytes[14]! | (bytes[15]! << 8) : 0;
  if (ascii(bytes, 0, 2) === 'BM' && [12, 40, 52, 56, 64, 108, 124].includes(dibHeaderSize))
    return 'a BMP image';
  if (ascii(bytes, 0, 2) === 'MZ') return 'a program';
  return undefined;
}

function looksLikeText(sample: Uint8Array): boolean {
  if (sample.length === 0) return false;
  let text: string;
  try {
    // A sample may end inside a multi-byte character: tolerate only that.
    text = new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, lastCharBoundary(sample)));
  } catch {
    return false;
  }
  let control = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c === 0) return false;
    if (c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) control++;
  }
  return control <= text.length * 0.01;
}

function lastCharBoundary(b: Uint8Array): number {
  let end = b.length;
  // Step back over at most 3 continuation bytes and the lead byte of an incomplete sequence.
  for (let i = 1; i <= 4 && end - i >= 0; i++) {
    const byte = b[end - i]!;
    if ((byte & 0xc0) === 0x80) continue;
    if (byte >= 0xc0) {
      const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      if (need > i) end -= i;
    }
    break;
  }
  return end;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

const formatMb = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
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
      `That image is too large (${formatMb(bytes.length)}). Please send one under ${formatMb(maxBytes)}.`,
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
// Pillow's resampling (libImaging/Resample.c), 8 bits per channel

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
