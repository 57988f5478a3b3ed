/** Small helpers over node:util parseArgs with errors a person can act on. */

import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UserFacingError } from '../errors.js';

export class UsageError extends UserFacingError {
  override name = 'UsageError';
  constructor(message: string) {
    super('usage', message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The parsed flags: booleans for `type: 'boolean'`, strings otherwise; absent when not given. */
export type ParsedFlags<O extends Options> = {
  [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : string;
};

/**
 * parseArgs takes `-1` after a flag for an option of its own ("ambiguous"), so `--length-penalty -1` (LAVIS's own
 * default) failed: a negative number after a flag that takes a value is joined to it as `--flag=-1`.
 */
function joinNegativeNumbers(argv: readonly string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

export function parse<O extends Options>(argv: string[], options: O, usage: string): ParsedFlags<O> {
  try {
    return parseArgs({
      args: joinNegativeNumbers(argv, options),
      options,
      allowPositionals: false,
      strict: true,
    }).values as ParsedFlags<O>;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}

export function requireString(value: unknown, flag: string, usage: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new UsageError(`missing ${flag}\n\n${usage}`);
  return value;
}

export function optionalInt(value: unknown, flag: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${flag} must be an integer ≥ ${min}, got "${String(value)}"`);
  return n;
}

export function optionalNumber(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got "${String(value)}"`);
  return n;
}

/** "1,2,3" → [1, 2, 3] */
export function parseIds(value: string, flag: string): number[] {
  const ids = value.split(',').map((s) => s.trim());
  if (ids.length === 0 || ids.some((s) => !/^\d+$/.test(s))) {
    throw new UsageError(`${flag} takes comma-separated token ids, e.g. ${flag} 11860,10,1`);
  }
  return ids.map(Number);
}

/** Like `parse`, for commands that also take positional arguments (e.g. `models pull <repo-id>`). */
export function parseWithPositionals<O extends Options>(
  argv: string[],
  options: O,
  usage: string,
): { values: ParsedFlags<O>; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: r.values as ParsedFlags<O>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}
