/** BLIP-2's `preprocessor_config.json`, validated, with BlipImageProcessor's defaults; and the cache version tag. */

import sharp from 'sharp';
import { UserFacingError } from '../errors.js';

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

export class PreprocessorConfigError extends UserFacingError {
  override name = 'PreprocessorConfigError';
  constructor(message: string) {
    super('preprocessor_config', message);
  }
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
