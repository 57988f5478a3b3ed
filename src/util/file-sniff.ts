/**
 * The one file sniffer: what a file really is from its first bytes. The engine names a non-image upload (PDF,
 * HTML, text, …) when the decoder refuses it, so the reply can say so; the Slack adapter checks a download before
 * it reaches the decoder, because Slack answers a file URL with an HTML sign-in page (status 200) when the token
 * lacks `files:read`.
 */

const ascii = (bytes: Uint8Array, start: number, end: number) =>
  String.fromCharCode(...bytes.subarray(start, Math.min(end, bytes.length)));

const startsWith = (bytes: Uint8Array, sig: number[], offset = 0) =>
  bytes.length >= offset + sig.length && sig.every((b, i) => bytes[offset + i] === b);

export type SniffedKind = 'image' | 'html' | 'pdf' | 'svg' | 'unknown';

export interface Sniffed {
  kind: SniffedKind;
  /** Short format name for messages: "JPEG", "PNG", "PDF", …; "unknown" when not recognised. */
  format: string;
  /** For anything but a decodable image: what it looks like, e.g. "a ZIP archive (or an Office document)". */
  description?: string;
}

/** The image formats the decoder (sharp) reads, by signature; undefined for anything else. */
export function imageFormat(bytes: Uint8Array): string | undefined {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'JPEG';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'PNG';
  if (ascii(bytes, 0, 4) === 'GIF8') return 'GIF';
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return 'WebP';
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a]))
    return 'TIFF';
  if (ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'AVIF';
    if (['heic', 'heix', 'mif1', 'msf1'].includes(brand)) return 'HEIF';
  }
  return undefined;
}

/** An image format the decoder reads, else what the file looks like (HTML, PDF, SVG or another description). */
export function sniffFile(bytes: Uint8Array): Sniffed {
  const format = imageFormat(bytes);
  if (format) return { kind: 'image', format };
  const description = describeNonImage(bytes);
  const kind = KINDS[description ?? ''] ?? 'unknown';
  const named = kind === 'html' ? 'HTML' : kind === 'pdf' ? 'PDF' : kind === 'svg' ? 'SVG' : 'unknown';
  return { kind, format: named, ...(description ? { description } : {}) };
}

const WEB_PAGE = 'a web page (HTML)';
const KINDS: Record<string, SniffedKind> = { [WEB_PAGE]: 'html', 'a PDF': 'pdf', 'an SVG drawing': 'svg' };

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
    return WEB_PAGE;
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
