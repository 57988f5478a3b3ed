/**
 * Test pictures: the real photos in ../shared/assets/images when the checkout has them, otherwise pictures drawn with
 * sharp, so the Slack tests run in a user's clone too.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { IMAGES_DIR } from '../helpers/shared.js';

/** Seeded noise: it does not compress, so a drawn picture is as large as a photo of the same size. */
async function drawn(
  width: number,
  height: number,
  seed: number,
  format: 'png' | 'jpeg' = 'png',
): Promise<Uint8Array> {
  const pixels = Buffer.alloc(width * height * 3);
  let state = seed * 2654435761;
  for (let i = 0; i < pixels.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    pixels[i] = state >>> 24;
  }
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  return new Uint8Array(await (format === 'png' ? image.png() : image.jpeg()).toBuffer());
}

export interface TestImages {
  cat: Uint8Array;
  rocket: Uint8Array;
  coffee: Uint8Array;
  /** A picture larger than 600 KB (for the download cap). */
  large: Uint8Array;
  /** A JPEG header with no image data behind it. */
  corrupt: Uint8Array;
  /** True when the shared photos were used. */
  real: boolean;
}

async function shared(name: string): Promise<Uint8Array | undefined> {
  const path = join(IMAGES_DIR, name);
  return existsSync(path) ? new Uint8Array(await readFile(path)) : undefined;
}

export async function loadTestImages(): Promise<TestImages> {
  const [cat, rocket, coffee, large, corrupt] = await Promise.all([
    shared('cat-chelsea.png'),
    shared('rocket-baseline.jpg'),
    shared('coffee-cup.png'),
    shared('astronaut-portrait.png'),
    shared('corrupt-header-only.jpg'),
  ]);
  const real = !!(cat && rocket && coffee && large && corrupt);
  const fallbackCorrupt = new Uint8Array([
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01,
  ]);
  return {
    // Under the tests' 600 KB cap even though noise does not compress.
    cat: cat ?? (await drawn(300, 200, 1)),
    rocket: rocket ?? (await drawn(320, 214, 2, 'jpeg')),
    coffee: coffee ?? (await drawn(300, 200, 3)),
    large: large ?? (await drawn(600, 600, 4)),
    corrupt: corrupt ?? fallbackCorrupt,
    real,
  };
}

/** Bytes of a minimal real PDF document. */
export const PDF_BYTES = new TextEncoder().encode(
  '%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n' +
    'trailer<</Root 1 0 R>>\n%%EOF\n',
);
