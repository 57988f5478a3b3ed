import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ImageError } from '../../src/engine/errors.js';
import {
  BLIP_PREPROCESSOR_DEFAULTS,
  decodeToRgb,
  describeNonImage,
  PIL_RESAMPLE,
  PREPROCESS_VERSION,
  parsePreprocessorConfig,
  preprocessCacheTag,
  preprocessImage,
  type Resampler,
  resizePillow,
  toPixelValues,
} from '../../src/engine/preprocess.js';
import { HAS_SHARED, IMAGES_DIR, TINY_FIXTURE_DIR } from '../helpers/shared.js';

/** Just enough of safetensors to read the golden tensors (U8 and F32). */
function readSafetensors(file: string): Map<string, { shape: number[]; data: Uint8Array | Float32Array }> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, { shape: number[]; data: Uint8Array | Float32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = new Uint8Array(buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]));
    out.set(name, { shape: t.shape, data: t.dtype === 'F32' ? new Float32Array(bytes.buffer) : bytes });
  }
  return out;
}

function absDiff(a: ArrayLike<number>, b: ArrayLike<number>) {
  expect(a.length).toBe(b.length);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / a.length, max };
}

async function expectImageError(p: Promise<unknown>, code: string, message?: RegExp) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageError);
  const e = err as ImageError;
  expect(e.code).toBe(code);
  expect(e.userMessage.length).toBeLessThan(160);
  expect(e.userMessage).not.toMatch(/\/|\\|vips|Error/);
  if (message) expect(e.userMessage).toMatch(message);
  return e;
}

/** Pixel (x, y) of channel c of a [1, 3, H, W] result. */
const px = (data: Float32Array, w: number, h: number, c: number, x: number, y: number) =>
  data[c * w * h + y * w + x]!;

/** Normalised value of u8 `v` in channel c under the BLIP defaults. */
const norm = (v: number, c: number) =>
  (v / 255 - BLIP_PREPROCESSOR_DEFAULTS.imageMean[c]!) / BLIP_PREPROCESSOR_DEFAULTS.imageStd[c]!;

describe('parsePreprocessorConfig', () => {
  it('applies BlipImageProcessor defaults', () => {
    const c = parsePreprocessorConfig({});
    expect(c).toEqual(BLIP_PREPROCESSOR_DEFAULTS);
    expect(c.size).toEqual({ height: 224, width: 224 });
    expect(c.resample).toBe(3);
    expect(c.imageMean).toEqual([0.48145466, 0.4578275, 0.40821073]);
    expect(parsePreprocessorConfig(undefined)).toEqual(BLIP_PREPROCESSOR_DEFAULTS);
  });

  it('reads the HF fields', () => {
    const c = parsePreprocessorConfig({
      do_normalize: false,
      do_resize: true,
      image_mean: [0.5, 0.5, 0.5],
      image_std: 0.5,
      image_processor_type: 'BlipImageProcessor',
      resample: 2,
      rescale_factor: 0.5,
      size: 364,
    });
    expect(c).toMatchObject({
      doNormalize: false,
      imageMean: [0.5, 0.5, 0.5],
      imageStd: [0.5, 0.5, 0.5],
      resample: 2,
      rescaleFactor: 0.5,
      size: { height: 364, width: 364 },
    });
  });

  it('rejects what BLIP preprocessing does not do', () => {
    expect(() => parsePreprocessorConfig({ size: { shortest_edge: 224 } })).toThrow(/size.*height/);
    expect(() => parsePreprocessorConfig({ do_center_crop: true })).toThrow(/center_crop/);
    expect(() => parsePreprocessorConfig({ image_processor_type: 'CLIPImageProcessor' })).toThrow(/BLIP/);
    expect(() => parsePreprocessorConfig({ resample: 7 })).toThrow(/resample/);
    expect(() => parsePreprocessorConfig({ image_std: [1, 0, 1] })).toThrow(/image_std/);
    expect(() => parsePreprocessorConfig({ image_mean: [1, 2] })).toThrow(/3 numbers/);
    expect(() => parsePreprocessorConfig([])).toThrow(/object/);
  });
});

describe('resizePillow and toPixelValues (no fixtures needed)', () => {
  it('keeps a constant image constant and an identity resize exact', () => {
    const src = new Uint8Array(37 * 23 * 3).fill(200);
    for (const filter of [1, 2, 3, 4, 5]) {
      expect(resizePillow(src, 37, 23, 3, 11, 50, filter).every((v) => v === 200)).toBe(true);
    }
    const noise = Uint8Array.from({ length: 8 * 5 * 3 }, (_, i) => (i * 97) % 256);
    expect(resizePillow(noise, 8, 5, 3, 8, 5)).toEqual(noise);
  });

  it('box-reduces by 2 as Pillow does (pair averages, rounding half up)', () => {
    const row = Uint8Array.from([10, 20, 30, 31, 0, 255, 7, 8]);
    expect(Array.from(resizePillow(row, 8, 1, 1, 4, 1, PIL_RESAMPLE.box))).toEqual([15, 31, 128, 8]);
  });

  it('picks the pixel under each centre for NEAREST', () => {
    const row = Uint8Array.from([0, 1, 2, 3, 4, 5]);
    expect(Array.from(resizePillow(row, 6, 1, 1, 3, 1, PIL_RESAMPLE.nearest))).toEqual([1, 3, 5]);
  });

  it('bicubic overshoots and clips at a hard edge, like Pillow', () => {
    const row = Uint8Array.from([0, 0, 0, 0, 255, 255, 255, 255]);
    const up = resizePillow(row, 8, 1, 1, 16, 1, PIL_RESAMPLE.bicubic);
    expect(Math.min(...up)).toBe(0);
    expect(Math.max(...up)).toBe(255);
    expect(up[7]! > 0 && up[7]! < 255).toBe(true);
  });

  it('rescales in float64, then normalises in float32, HWC → CHW', () => {
    const rgb = Uint8Array.from([0, 128, 255, 255, 0, 1]);
    const out = toPixelValues(rgb, 2, 1, BLIP_PREPROCESSOR_DEFAULTS);
    const f = Math.fround;
    const expected = (v: number, c: number) =>
      f(
        f(f(v * (1 / 255)) - f(BLIP_PREPROCESSOR_DEFAULTS.imageMean[c]!)) /
          f(BLIP_PREPROCESSOR_DEFAULTS.imageStd[c]!),
      );
    expect(Array.from(out)).toEqual([
      expected(0, 0),
      expected(255, 0),
      expected(128, 1),
      expected(0, 1),
      expected(255, 2),
      expected(1, 2),
    ]);
    const raw = toPixelValues(rgb, 2, 1, {
      ...BLIP_PREPROCESSOR_DEFAULTS,
      doRescale: false,
      doNormalize: false,
    });
    expect(Array.from(raw)).toEqual([0, 255, 128, 0, 255, 1]);
  });
});

describe('preprocessImage: limits and non-images (no fixtures needed)', () => {
  const tinyPng = async (w: number, h: number, alpha = false) =>
    new Uint8Array(
      await sharp({
        create: {
          width: w,
          height: h,
          channels: alpha ? 4 : 3,
          background: { r: 10, g: 200, b: 30, alpha: 0 },
        },
      })
        .png()
        .toBuffer(),
    );

  it('makes [1, 3, 224, 224] from a generated PNG', async () => {
    const r = await preprocessImage(await tinyPng(40, 30));
    expect(r.dims).toEqual([1, 3, 224, 224]);
    expect(r.data.length).toBe(3 * 224 * 224);
    expect(px(r.data, 224, 224, 1, 100, 100)).toBeCloseTo(norm(200, 1), 5);
  });

  it('refuses empty input and input over the byte limit', async () => {
    await expectImageError(preprocessImage(new Uint8Array(0)), 'empty');
    const png = await tinyPng(40, 30);
    await expectImageError(
      preprocessImage(png, undefined, { maxBytes: 50 }),
      'too_large',
      /too large \(\d+ bytes\)\. Please send one under 50 bytes/,
    );
    const big = new Uint8Array(21 * 1024 * 1024);
    big.set(png);
    await expectImageError(preprocessImage(big), 'too_large', /too large \(21 MB\).*under 20 MB/);
  });

  it('refuses images over the pixel limit before decoding them', async () => {
    await expectImageError(
      preprocessImage(await tinyPng(400, 300), undefined, { maxInputPixels: 100_000 }),
      'too_many_pixels',
      /0\.1 megapixels/,
    );
    // A PNG header declaring 20000×20000 with a token of pixel data: refused from the header alone.
    const chunk = (type: string, data: Uint8Array) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(body));
      return Buffer.concat([len, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(20000, 0);
    ihdr.writeUInt32BE(20000, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc(100))),
      chunk('IEND', new Uint8Array(0)),
    ]);
    await expectImageError(preprocessImage(new Uint8Array(bomb)), 'too_many_pixels', /400 megapixels/);
  });

  it('says what non-image uploads look like', async () => {
    const cases: [string, string | Uint8Array, RegExp][] = [
      [
        'pdf',
        '%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n',
        /looks like a PDF, not an image/,
      ],
      [
        'html',
        '<!DOCTYPE html>\n<html><head><title>x</title></head><body>hi</body></html>',
        /web page \(HTML\)/,
      ],
      ['text', 'Here is my picture: (forgot to attach it)\n', /looks like text/],
      ['json', '{"url": "https://example.com/cat.jpg"}', /JSON text/],
      [
        'svg',
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        /SVG drawing, which I can't read/,
      ],
      ['zip', Uint8Array.from([0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 8, 0, 1, 2, 3]), /ZIP archive/],
      [
        'mp4',
        Uint8Array.from([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70, 0x6d, 0x70, 0x34, 0x32, 0, 0, 0, 0]),
        /a video/,
      ],
      [
        'random',
        Uint8Array.from({ length: 600 }, (_, i) => ((i * 7919 + 13) % 251) | 0x80),
        /doesn't look like an image/,
      ],
    ];
    for (const [, input, message] of cases) {
      const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input;
      await expectImageError(preprocessImage(bytes), 'unsupported_type', message);
    }
    expect(describeNonImage(new TextEncoder().encode('BMW is a car brand'))).toBe('text');
  });

  it('flattenAlpha composites transparent pixels onto the colour; the default drops alpha', async () => {
    const png = await tinyPng(16, 16, true); // fully transparent, RGB (10, 200, 30) underneath
    const dropped = await preprocessImage(png);
    expect(dropped.info).toMatchObject({ hadAlpha: true, alpha: 'dropped' });
    expect(px(dropped.data, 224, 224, 1, 5, 5)).toBeCloseTo(norm(200, 1), 5);
    const white = await preprocessImage(png, undefined, { flattenAlpha: '#ffffff' });
    expect(white.info.alpha).toBe('flattened');
    for (let c = 0; c < 3; c++) expect(px(white.data, 224, 224, c, 5, 5)).toBeCloseTo(norm(255, c), 5);
    const blue = await preprocessImage(png, undefined, { flattenAlpha: { r: 0, g: 0, b: 255 } });
    expect(px(blue.data, 224, 224, 0, 9, 9)).toBeCloseTo(norm(0, 0), 5);
    expect(px(blue.data, 224, 224, 2, 9, 9)).toBeCloseTo(norm(255, 2), 5);
    await expect(preprocessImage(png, undefined, { flattenAlpha: { r: 300, g: 0, b: 0 } })).rejects.toThrow(
      /0-255/,
    );
  });

  it('names the options that change pixels in the cache tag', () => {
    expect(preprocessCacheTag()).toBe(PREPROCESS_VERSION);
    expect(preprocessCacheTag({ maxBytes: 5 })).toBe(PREPROCESS_VERSION);
    expect(preprocessCacheTag({ flattenAlpha: 'White' })).toBe(`${PREPROCESS_VERSION};flatten=white`);
    expect(preprocessCacheTag({ autoOrient: false, resampler: 'sharp-cubic' })).toContain('orient=off');
  });
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe.skipIf(!HAS_SHARED)(
  'preprocessImage: parity with HF BlipImageProcessor (../shared fixtures)',
  () => {
    const fixtureImages = ['a0_scene_320x200.jpg', 'a1_shapes_rgba_150x300.png', 'a2_pattern_256x256.png'];
    const read = () => ({
      u8: readSafetensors(join(TINY_FIXTURE_DIR, 'golden_pixels_u8.safetensors')),
      golden: readSafetensors(join(TINY_FIXTURE_DIR, 'golden.safetensors')),
      config: parsePreprocessorConfig(
        JSON.parse(readFileSync(join(TINY_FIXTURE_DIR, 'preprocessor_config.json'), 'utf8')),
      ),
    });

    it('parses the fixture preprocessor_config.json to the BLIP defaults', () => {
      expect(read().config).toEqual(BLIP_PREPROCESSOR_DEFAULTS);
    });

    it('our Pillow resize of the golden decoded pixels equals the golden resized pixels byte for byte', () => {
      const { u8, golden, config } = read();
      fixtureImages.forEach((_, i) => {
        const decoded = u8.get(`image.decoded_rgb_u8.${i}`)!;
        const resized = u8.get(`image.resized_rgb_u8.${i}`)!;
        const [h, w] = decoded.shape as [number, number];
        const ours = resizePillow(decoded.data as Uint8Array, w, h, 3, 224, 224, config.resample);
        expect(absDiff(ours, resized.data).max).toBe(0);
        // And rescale + normalise of the golden u8 is the golden pixel_values exactly.
        const pv = toPixelValues(resized.data as Uint8Array, 224, 224, config);
        expect(absDiff(pv, golden.get(`pixel_values.${i}`)!.data).max).toBe(0);
      });
    });

    it('file → pixel_values within mean abs 0.02 of golden (Pillow port), beside the sharp kernels', async () => {
      const { u8, golden, config } = read();
      const lines: string[] = [];
      for (const [i, file] of fixtureImages.entries()) {
        const bytes = new Uint8Array(readFileSync(join(TINY_FIXTURE_DIR, file)));
        const decoded = await decodeToRgb(bytes);
        const dec = absDiff(decoded.data, u8.get(`image.decoded_rgb_u8.${i}`)!.data);
        lines.push(`${file}: decode vs PIL u8 mean ${dec.mean.toFixed(4)} max ${dec.max}`);
        const want = golden.get(`pixel_values.${i}`)!.data;
        for (const resampler of [
          'pillow',
          'sharp-cubic',
          'sharp-mitchell',
          'sharp-lanczos3',
        ] as Resampler[]) {
          const r = await preprocessImage(bytes, config, { resampler });
          expect(r.dims).toEqual([1, 3, 224, 224]);
          const d = absDiff(r.data, want);
          lines.push(
            `  ${resampler.padEnd(15)} pixel_values mean abs ${d.mean.toFixed(5)}  max abs ${d.max.toFixed(5)}`,
          );
          if (resampler === 'pillow') expect(d.mean).toBeLessThanOrEqual(0.02);
        }
      }
      console.log(`[preprocess parity, normalised units]\n${lines.join('\n')}`);
    });
  },
);

describe.skipIf(!HAS_SHARED)('preprocessImage: every test image (../shared/assets/images)', () => {
  const manifest = () =>
    (
      JSON.parse(readFileSync(join(IMAGES_DIR, 'manifest.json'), 'utf8')) as {
        images: { file: string; exif_orientation: number | null }[];
      }
    ).images;
  const bytesOf = (file: string) => new Uint8Array(readFileSync(join(IMAGES_DIR, file)));

  it('gives finite [1, 3, 224, 224] pixels or a clear ImageError', async () => {
    const files = manifest().map((m) => m.file);
    expect(files.length).toBe(21);
    for (const file of files) {
      if (file === 'corrupt-header-only.jpg') {
        await expectImageError(preprocessImage(bytesOf(file)), 'corrupt', /damaged/);
        continue;
      }
      const r = await preprocessImage(bytesOf(file));
      expect(r.dims, file).toEqual([1, 3, 224, 224]);
      expect(r.data.length).toBe(3 * 224 * 224);
      expect(
        r.data.every((v) => Number.isFinite(v) && v > -2.2 && v < 2.7),
        file,
      ).toBe(true);
      expect(r.info.truncated, file).toBe(file === 'truncated-progressive.jpg');
    }
  });

  it('decodes a truncated JPEG as far as it goes and flags it', async () => {
    const r = await preprocessImage(bytesOf('truncated-progressive.jpg'));
    expect(r.info.truncated).toBe(true);
    expect(r.info.warnings.join(' ')).toMatch(/premature end/);
  });

  it('turns EXIF-rotated photos upright', async () => {
    for (const [file, orientation] of [
      ['exif-orientation-6.jpg', 6],
      ['exif-orientation-8.jpg', 8],
    ] as const) {
      const upright = await decodeToRgb(bytesOf(file));
      const stored = await decodeToRgb(bytesOf(file), { autoOrient: false });
      expect(upright.info).toMatchObject({ orientation, orientationApplied: true, uprightWidth: 600 });
      expect([stored.width, stored.height]).toEqual([450, 600]);
      expect([upright.width, upright.height]).toEqual([600, 450]);
      // Orientation 6 is displayed rotated 90° clockwise, 8 counter-clockwise.
      const rotated = rotate90(stored.data, stored.width, stored.height, orientation === 6 ? 'cw' : 'ccw');
      expect(absDiff(rotated, upright.data).max).toBe(0);
      // In the upright photo the sky is at the top: the top rows are brighter than the bottom rows.
      const rowMean = (y0: number, y1: number) => {
        let s = 0;
        for (let i = y0 * 600 * 3; i < y1 * 600 * 3; i++) s += upright.data[i]!;
        return s / ((y1 - y0) * 600 * 3);
      };
      expect(rowMean(0, 60)).toBeGreaterThan(rowMean(390, 450) + 20);
    }
    // The two files hold the same photo stored in opposite rotations: upright, they agree outside the digit.
    const six = await preprocessImage(bytesOf('exif-orientation-6.jpg'));
    const eight = await preprocessImage(bytesOf('exif-orientation-8.jpg'));
    const parity = await preprocessImage(bytesOf('exif-orientation-6.jpg'), undefined, { autoOrient: false });
    expect(absDiff(six.data, eight.data).mean).toBeLessThan(0.1);
    expect(absDiff(six.data, parity.data).mean).toBeGreaterThan(0.3);
  });

  it('converts grayscale, CMYK (with and without ICC), palette and 16-bit input to sRGB', async () => {
    const gray = await decodeToRgb(bytesOf('grayscale-concert.jpg'));
    expect(gray.info.colourSpace).toBe('b-w');
    let grey = true;
    for (let i = 0; i < gray.data.length; i += 3) {
      if (gray.data[i] !== gray.data[i + 1] || gray.data[i] !== gray.data[i + 2]) grey = false;
    }
    expect(grey).toBe(true);

    // "RED" in red on a dark background: a wrong CMYK inversion would make it cyan or light.
    const cmyk = await decodeToRgb(bytesOf('cmyk-small.jpg'));
    expect(cmyk.info).toMatchObject({ colourSpace: 'cmyk', hasIccProfile: false });
    let reddest = 0;
    for (let i = 0; i < cmyk.data.length; i += 3) {
      reddest = Math.max(reddest, cmyk.data[i]! - Math.max(cmyk.data[i + 1]!, cmyk.data[i + 2]!));
    }
    expect(reddest).toBeGreaterThan(120);
    const photo = await decodeToRgb(bytesOf('cmyk-photo-icc.jpg'));
    expect(photo.info).toMatchObject({ colourSpace: 'cmyk', hasIccProfile: true, width: 500, height: 333 });

    const toucan = await decodeToRgb(bytesOf('palette-trns-toucan.png'));
    expect(toucan.info).toMatchObject({ palette: true, hadAlpha: true, alpha: 'dropped' });
    const rgb16 = await decodeToRgb(bytesOf('rgb16-trns-pngsuite.png'));
    expect(rgb16.info).toMatchObject({ bitDepth: 16, colourSpace: 'rgb16' });
    expect(rgb16.data.length).toBe(32 * 32 * 3);
  });

  it('converts embedded ICC profiles to sRGB unless asked to ignore them (as PIL does)', async () => {
    // rocket-baseline.jpg carries an Adobe RGB (1998) profile; cat-chelsea.png an sRGB one.
    const rocket = bytesOf('rocket-baseline.jpg');
    const managed = await preprocessImage(rocket);
    const raw = await preprocessImage(rocket, undefined, { ignoreIccProfile: true });
    const d = absDiff(managed.data, raw.data);
    console.log(
      `[preprocess] Adobe RGB photo, sRGB-converted vs raw numbers: mean abs ${d.mean.toFixed(4)}, max ${d.max.toFixed(3)}`,
    );
    expect(d.mean).toBeGreaterThan(0.03);
    const cat = bytesOf('cat-chelsea.png');
    const catManaged = await preprocessImage(cat);
    const catRaw = await preprocessImage(cat, undefined, { ignoreIccProfile: true });
    expect(absDiff(catManaged.data, catRaw.data).mean).toBeLessThan(0.002);
  });

  it('uses the first frame of an animation', async () => {
    const file = 'animated-rotating-squares.gif';
    const r = await preprocessImage(bytesOf(file));
    expect(r.info.frames).toBe(30);
    const frame = async (page: number) => {
      const raw = await sharp(bytesOf(file), { page }).removeAlpha().raw().toBuffer();
      return toPixelValues(
        resizePillow(new Uint8Array(raw), 80, 80, 3, 224, 224),
        224,
        224,
        BLIP_PREPROCESSOR_DEFAULTS,
      );
    };
    expect(absDiff(r.data, await frame(0)).max).toBe(0);
    expect(absDiff(r.data, await frame(7)).max).toBeGreaterThan(0.5);
  });

  it('flattenAlpha changes the transparent background of real images', async () => {
    // Handwriting on transparent pixels that are white underneath: flattening onto black blackens them.
    const text = bytesOf('alpha-transparent-text.png');
    const dropped = await preprocessImage(text);
    const black = await preprocessImage(text, undefined, { flattenAlpha: 'black' });
    for (let c = 0; c < 3; c++) {
      expect(px(dropped.data, 224, 224, c, 2, 2)).toBeCloseTo(norm(255, c), 4);
      expect(px(black.data, 224, 224, c, 2, 2)).toBeCloseTo(norm(0, c), 4);
    }
    // Toucan: black under its transparent corner; flattening onto white whitens it.
    const toucan = bytesOf('palette-trns-toucan.png');
    const t0 = await preprocessImage(toucan);
    const t1 = await preprocessImage(toucan, undefined, { flattenAlpha: { r: 255, g: 255, b: 255 } });
    expect(px(t0.data, 224, 224, 0, 0, 0)).toBeCloseTo(norm(0, 0), 4);
    expect(px(t1.data, 224, 224, 0, 0, 0)).toBeCloseTo(norm(255, 0), 4);
  });

  it('pre-shrinks huge images with libvips, close to the exact resize and the right way up', async () => {
    // 2048×1536; flattened, because dropped alpha is never pre-shrunk (libvips resizes premultiplied pixels).
    const text = bytesOf('alpha-transparent-text.png');
    const options = { flattenAlpha: 'white' };
    const exact = await preprocessImage(text, undefined, options);
    const shrunk = await preprocessImage(text, undefined, { ...options, maxResamplePixels: 1_000_000 });
    const dropped = await preprocessImage(text, undefined, { maxResamplePixels: 1_000_000 });
    expect(dropped.info.decodedWidth).toBe(2048);
    expect(shrunk.info.decodedWidth).toBeLessThan(2048);
    expect(shrunk.info.decodedWidth).toBeGreaterThanOrEqual(4 * 224);
    expect(shrunk.info.decodedHeight).toBeGreaterThanOrEqual(4 * 224);
    const d = absDiff(exact.data, shrunk.data);
    console.log(
      `[preprocess] pre-shrink 2048×1536 → ${shrunk.info.decodedWidth}×${shrunk.info.decodedHeight}: mean abs ${d.mean.toFixed(5)}, max ${d.max.toFixed(4)}`,
    );
    expect(d.mean).toBeLessThan(0.02);

    // A big EXIF-6 JPEG (stored portrait, displayed landscape): shrinking must keep the upright shape.
    const big = new Uint8Array(
      await sharp(bytesOf('exif-orientation-6.jpg'), { autoOrient: false })
        .resize(1800, 2400)
        .withMetadata({ orientation: 6 })
        .jpeg({ quality: 90 })
        .toBuffer(),
    );
    const a = await preprocessImage(big);
    const b = await preprocessImage(big, undefined, { maxResamplePixels: 1_000_000 });
    expect(a.info).toMatchObject({ orientationApplied: true, uprightWidth: 2400, uprightHeight: 1800 });
    expect(b.info.decodedWidth).toBeGreaterThan(b.info.decodedHeight);
    expect(b.info.decodedWidth).toBeLessThan(2400);
    expect(absDiff(a.data, b.data).mean).toBeLessThan(0.02);
  });
});

function rotate90(src: Uint8Array, w: number, h: number, dir: 'cw' | 'ccw'): Uint8Array {
  // Output is h wide and w tall.
  const out = new Uint8Array(src.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [ox, oy] = dir === 'cw' ? [h - 1 - y, x] : [y, w - 1 - x];
      for (let c = 0; c < 3; c++) out[(oy * h + ox) * 3 + c] = src[(y * w + x) * 3 + c]!;
    }
  }
  return out;
}
