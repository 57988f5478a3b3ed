/** Small helpers shared by the benchmark scripts. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { Rng } from '../src/util/random.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * A benchmark script's flags: `--help` prints its usage and exits 0; an unknown or malformed flag prints what was
 * wrong and the usage, and exits 2 (not node's stack trace).
 */
export function benchArgs<const O extends Options>(
  options: O,
  usage: string,
  config: { allowPositionals?: boolean } = {},
): ReturnType<typeof parseArgs<{ options: O; allowPositionals: boolean }>> {
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    console.log(usage);
    process.exit(0);
  }
  try {
    return parseArgs({ options, allowPositionals: config.allowPositionals ?? false });
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}

export function seededNormalArray(length: number, std: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.nextNormal() * std;
  return out;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Renders rows as a Markdown table (also readable in a terminal). */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((v, c) => v.padEnd(widths[c]!)).join(' | ')} |`;
  return [
    line(cells[0]!),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...cells.slice(1).map(line),
  ].join('\n');
}
