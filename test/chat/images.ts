/** Image bytes and IncomingImage helpers for the chat tests (generated with sharp, so no fixture is needed). */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { IncomingImage } from '../../src/chat/types.js';
import { ImageError } from '../../src/engine/errors.js';
import { IMAGES_DIR } from '../helpers/shared.js';

export async function pngBytes(seed: number, size = 48): Promise<Uint8Array> {
  const background = { r: (seed * 53) % 256, g: (seed * 97) % 256, b: (seed * 151) % 256 };
  const buffer = await sharp({ create: { width: size, height: size, channels: 3, background } })
    .png()
    .toBuffer();
  return new Uint8Array(buffer);
}

/** A JPEG cut off inside its headers: the shared fixture when present, else the first bytes of a real JPEG. */
export async function corruptJpegBytes(): Promise<Uint8Array> {
  const shared = join(IMAGES_DIR, 'corrupt-header-only.jpg');
  if (existsSync(shared)) return new Uint8Array(readFileSync(shared));
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'red' } })
    .jpeg()
    .toBuffer();
  return new Uint8Array(jpeg.subarray(0, 200));
}

export interface TestImageOptions {
  contentType?: string;
  /** Declared size; defaults to the real size. `null` = not declared. */
  size?: number | null;
  /** Keeps the download pending until aborted. */
  hang?: boolean;
}

export class TestImage implements IncomingImage {
  downloads = 0;
  readonly contentType?: string;
  readonly size?: number;

  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
    options: TestImageOptions = {},
  ) {
    const contentType = options.contentType ?? 'image/png';
    if (contentType) this.contentType = contentType;
    if (options.size !== null) this.size = options.size ?? bytes.byteLength;
    this.hang = options.hang ?? false;
  }

  private readonly hang: boolean;

  async download(maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    this.downloads++;
    if (this.hang) {
      await new Promise<never>((_, reject) => {
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    if (this.bytes.byteLength > maxBytes) throw new ImageError('too_large', `"${this.name}" is too large.`);
    return this.bytes;
  }
}
