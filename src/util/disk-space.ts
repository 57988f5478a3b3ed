/**
 * The one free-space check before writing many gigabytes (synthetic checkpoints, `models pull`): refuse up front
 * with the numbers instead of failing with ENOSPC half-way through.
 */
import type { StatsFs } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UserFacingError } from '../errors.js';
import { formatBytes } from './bytes.js';

/** Headroom left free on the disk beyond the files themselves. */
export const SPACE_MARGIN_BYTES = 64 * 1024 * 1024;

/** Reads a file system's free space; tests inject one to play a full disk. */
export type StatfsReader = (path: string) => Promise<Pick<StatsFs, 'bavail' | 'bsize'>>;

export class InsufficientDiskSpaceError extends UserFacingError {
  override name = 'InsufficientDiskSpaceError';
  constructor(
    readonly dir: string,
    readonly neededBytes: number,
    readonly availableBytes: number,
    what: string,
    hint: string,
  ) {
    super(
      'disk_space',
      `not enough free disk space in ${dir}: ${what} needs ${formatBytes(neededBytes)} (plus ${formatBytes(SPACE_MARGIN_BYTES)} headroom) but only ${formatBytes(availableBytes)} is available; ${hint}`,
    );
  }
}

/** Free bytes for an unprivileged writer on the file system holding `path` (or its nearest existing parent). */
export async function freeBytes(path: string, reader: StatfsReader = statfs): Promise<number> {
  let dir = resolve(path);
  for (;;) {
    try {
      const s = await reader(dir);
      return Number(s.bavail) * Number(s.bsize);
    } catch (e) {
      const parent = dirname(dir);
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || parent === dir) throw e;
      dir = parent;
    }
  }
}

export interface SpaceCheck {
  /** What needs the space, for the message, e.g. "the synthetic checkpoint". */
  what: string;
  /** What the person can do, e.g. "free some space or choose another --out". */
  hint: string;
  statfs?: StatfsReader;
}

/** Throws InsufficientDiskSpaceError unless `neededBytes` plus the margin fit on `dir`'s file system. */
export async function ensureFreeSpace(dir: string, neededBytes: number, check: SpaceCheck): Promise<void> {
  const available = await freeBytes(dir, check.statfs);
  if (available < neededBytes + SPACE_MARGIN_BYTES)
    throw new InsufficientDiskSpaceError(dir, neededBytes, available, check.what, check.hint);
}
