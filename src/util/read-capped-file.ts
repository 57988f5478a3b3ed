/**
 * Reading a file a person named (an image, a question file) without trusting it: the type and size are checked
 * before anything is read, and the read itself stops one byte past the cap, so `/dev/zero`, a FIFO, a directory
 * or a multi-gigabyte file get a clear answer instead of a hang, an allocation of the whole file or a stack trace.
 */
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { UserFacingError } from '../errors.js';
import { concatChunks, formatBytes } from './bytes.js';

export type FileReadProblem = 'not_found' | 'not_a_file' | 'too_large' | 'unreadable';

export class FileReadError extends UserFacingError {
  override name = 'FileReadError';
  constructor(
    readonly problem: FileReadProblem,
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(problem, message, options);
  }
}

export interface ReadCappedOptions {
  /** Refuse files larger than this. */
  maxBytes: number;
  /** What the file is, for messages ("image", "question file"); default "file". */
  what?: string;
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the path is too long',
};

function cannotRead(path: string, what: string, err: unknown): FileReadError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const reason = REASONS[code] ?? (err as Error).message;
  return new FileReadError(
    code === 'ENOENT' || code === 'ENOTDIR' ? 'not_found' : 'unreadable',
    path,
    `cannot read the ${what} ${path}: ${reason}`,
    { cause: err },
  );
}

function tooLarge(path: string, what: string, maxBytes: number, size?: number): FileReadError {
  const is = size === undefined ? 'is larger' : `is ${formatBytes(size)}, larger`;
  return new FileReadError(
    'too_large',
    path,
    `the ${what} ${path} ${is} than the ${formatBytes(maxBytes)} I accept; please use a smaller one`,
  );
}

/**
 * Checks that `path` is a regular file no larger than `maxBytes`, without reading it; returns its size.
 * Throws FileReadError otherwise.
 */
export async function checkFile(path: string, options: ReadCappedOptions): Promise<number> {
  const what = options.what ?? 'file';
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    throw cannotRead(path, what, err);
  }
  if (info.isDirectory()) {
    throw new FileReadError('not_a_file', path, `the ${what} ${path} is a directory, not a file`);
  }
  if (!info.isFile()) {
    throw new FileReadError(
      'not_a_file',
      path,
      `the ${what} ${path} is not a regular file (a device, pipe or socket); please give a file`,
    );
  }
  if (info.size > options.maxBytes) throw tooLarge(path, what, options.maxBytes, info.size);
  return info.size;
}

/** Reads at most `maxBytes` of a regular file; see checkFile for what is refused. */
export async function readCappedFile(path: string, options: ReadCappedOptions): Promise<Uint8Array> {
  const what = options.what ?? 'file';
  const size = await checkFile(path, options);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it must not wait for a writer.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw cannotRead(path, what, err);
  }
  try {
    // The size can change between stat and read (a growing file): read in chunks and stop one byte past the cap.
    const chunks: Uint8Array[] = [];
    let total = 0;
    let chunkBytes = Math.min(Math.max(size, 64 * 1024), options.maxBytes + 1);
    for (;;) {
      const buffer = new Uint8Array(Math.min(chunkBytes, options.maxBytes + 1 - total));
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
      total += bytesRead;
      if (total > options.maxBytes) throw tooLarge(path, what, options.maxBytes);
      chunkBytes = 1024 * 1024;
    }
    return concatChunks(chunks);
  } catch (err) {
    if (err instanceof FileReadError) throw err;
    throw cannotRead(path, what, err);
  } finally {
    await handle.close();
  }
}
