/**
 * Recognises what a downloaded file really is from its first bytes. Slack answers a file URL with an HTML login
 * page (status 200) when the token lacks `files:read`, and people attach PDFs; both must be caught here, before the
 * bytes reach the image decoder.
 */

export type SniffedKind = 'image' | 'html' | 'pdf' | 'svg' | 'unknown';

export interface Sniffed {
  kind: SniffedKind;
  /** Short format name for messages: "JPEG", "PNG", "PDF", … */
  format: string;
}

function startsWith(bytes: Uint8Array, signature: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + signature.length) return false;
  return signature.every((byte, i) => bytes[offset + i] === byte);
}

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, Math.min(end, bytes.length)));
}

export function sniffFile(bytes: Uint8Array): Sniffed {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return { kind: 'image', format: 'JPEG' };
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    return { kind: 'image', format: 'PNG' };
  if (ascii(bytes, 0, 4) === 'GIF8') return { kind: 'image', format: 'GIF' };
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP')
    return { kind: 'image', format: 'WebP' };
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) {
    return { kind: 'image', format: 'TIFF' };
  }
  if (ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12);
    if (brand === 'avif' || brand === 'avis') return { kind: 'image', format: 'AVIF' };
    if (['heic', 'heix', 'mif1', 'msf1'].includes(brand)) return { kind: 'image', format: 'HEIF' };
  }
  if (ascii(bytes, 0, 5) === '%PDF-') return { kind: 'pdf', format: 'PDF' };

  const head = ascii(bytes, 0, 512)
    .replace(/^\uFEFF/, '')
    .trimStart()
    .toLowerCase();
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || /^<head[\s>]/.test(head)) {
    return { kind: 'html', format: 'HTML' };
  }
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) {
    return { kind: 'svg', format: 'SVG' };
  }
  return { kind: 'unknown', format: 'unknown' };
}
