/** The one byte formatter for messages: binary units, one decimal below 10 of a unit ("1.5 MB", "20 MB", "3.0 GB"). */
export function formatBytes(bytes: number): string {
  const units: [number, string][] = [
    [1024 ** 3, 'GB'],
    [1024 ** 2, 'MB'],
    [1024, 'KB'],
  ];
  for (const [size, unit] of units) {
    if (bytes >= size) {
      const value = bytes / size;
      return `${value.toFixed(value >= 10 || unit === 'KB' ? 0 : 1)} ${unit}`;
    }
  }
  return `${bytes} bytes`;
}

/** Chunks read one after another as one array (the chunk itself when there is only one: no copy). */
export function concatChunks(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  let total = 0;
  for (const chunk of chunks) total += chunk.byteLength;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
