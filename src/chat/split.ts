/**
 * Splits text into chunks no longer than `max` characters, preferring paragraph, line, sentence and word
 * boundaries, and never cutting a surrogate pair in half.
 */
export function splitMessage(text: string, max: number): string[] {
  if (!Number.isFinite(max) || text.length <= max) return [text];
  if (max < 2) throw new RangeError('max must be at least 2');
  const chunks: string[] = [];
  let rest = text;
  while (rest.length > max) {
    const cut = findCut(rest, max);
    const chunk = rest.slice(0, cut).trimEnd();
    if (chunk) chunks.push(chunk);
    rest = rest.slice(cut).replace(/^\s+/, '');
  }
  if (rest) chunks.push(rest);
  return chunks;
}

function findCut(text: string, max: number): number {
  const window = text.slice(0, max + 1);
  // Accept a boundary only in the second half, so chunks do not get needlessly short.
  const floor = Math.floor(max / 2);
  for (const boundary of ['\n\n', '\n', '. ', ' ']) {
    const at = window.lastIndexOf(boundary);
    const cut = boundary === '. ' ? at + 1 : at;
    if (at >= floor && cut <= max) return cut;
  }
  const code = text.charCodeAt(max - 1);
  const highSurrogate = code >= 0xd800 && code <= 0xdbff;
  return highSurrogate ? max - 1 : max;
}
