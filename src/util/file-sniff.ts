/** Names what a non-image upload looks like (PDF, HTML, text, …) from its first bytes, so the reply can say so. */

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
