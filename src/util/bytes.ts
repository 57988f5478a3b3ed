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
