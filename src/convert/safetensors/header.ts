/**
 * Parsing one safetensors file's header (only the header is read) and the positioned reads the readers share.
 * Every offset is checked against the file, so a truncated or hand-edited file is a one-line error, not a crash.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { CheckpointError, InvalidHeaderError, TruncatedFileError } from './errors.js';
import { DTYPE_BYTES, elementCount, IO_CHUNK, isShape, MAX_HEADER_BYTES, type TensorInfo } from './format.js';

export interface SafetensorsHeader {
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  /** The raw JSON header bytes (without the 8-byte length). */
  headerBytes: Uint8Array;
  /** Byte offset where tensor data starts (8 + header length). */
  dataStart: number;
  fileSize: number;
}

export async function readFully(
  fh: FileHandle,
  target: Uint8Array,
  position: number,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(target.length - done, IO_CHUNK);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) throw new TruncatedFileError(file, position + target.length, position + done);
    done += bytesRead;
  }
}

export async function parseHeader(fh: FileHandle, file: string): Promise<SafetensorsHeader> {
  const fileSize = (await fh.stat()).size;
  if (fileSize < 8)
    throw new InvalidHeaderError(
      file,
      `the file has only ${fileSize} bytes, fewer than the 8-byte header length`,
    );
  const lenBytes = new Uint8Array(8);
  await readFully(fh, lenBytes, 0, file);
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new InvalidHeaderError(
      file,
      `header length ${headerLen} bytes is absurd (limit ${MAX_HEADER_BYTES})`,
    );
  }
  const n = Number(headerLen);
  if (8 + n > fileSize) {
    throw new InvalidHeaderError(
      file,
      `header length ${n} bytes runs past the end of the ${fileSize}-byte file`,
    );
  }
  const headerBytes = new Uint8Array(n);
  await readFully(fh, headerBytes, 8, file);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new InvalidHeaderError(file, `the header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new InvalidHeaderError(file, 'the header is not a JSON object');
  }
  const dataStart = 8 + n;
  const tensors: TensorInfo[] = [];
  const ranges: { name: string; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry === 'object' && entry !== null && !Array.isArray(entry)) {
        metadata = Object.fromEntries(Object.entries(entry).map(([k, v]) => [k, String(v)]));
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null) {
      throw new InvalidHeaderError(file, `entry for "${name}" is not an object`, name);
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string') throw new InvalidHeaderError(file, `tensor "${name}" has no dtype`, name);
    if (!isShape(shape)) throw new InvalidHeaderError(file, `tensor "${name}" has an invalid shape`, name);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[1] < offsets[0]
    ) {
      throw new InvalidHeaderError(file, `tensor "${name}" has invalid data_offsets`, name);
    }
    const [begin, end] = offsets as [number, number];
    const size = DTYPE_BYTES[dtype];
    if (size !== undefined && end - begin !== elementCount(shape) * size) {
      throw new InvalidHeaderError(
        file,
        `tensor "${name}" (${dtype} [${shape.join(', ')}]) should take ${elementCount(shape) * size} bytes but its offsets span ${end - begin}`,
        name,
      );
    }
    ranges.push({ name, begin, end });
    tensors.push({ name, dtype, shape, file, byteOffset: dataStart + begin, byteLength: end - begin });
  }
  // Like the reference implementation, require the tensors to tile the data section from 0 without gaps or
  // overlaps: anything else means a corrupt or hand-edited header.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const r of ranges) {
    if (r.begin !== cursor) {
      throw new InvalidHeaderError(
        file,
        r.begin < cursor
          ? `tensor "${r.name}" overlaps the previous tensor (offset ${r.begin} < ${cursor})`
          : `gap before tensor "${r.name}" (offset ${r.begin}, previous tensor ends at ${cursor})`,
        r.name,
      );
    }
    cursor = r.end;
  }
  if (dataStart + cursor > fileSize) {
    const last = ranges[ranges.length - 1];
    throw new TruncatedFileError(file, dataStart + cursor, fileSize, last?.name);
  }
  return { tensors, metadata, headerBytes, dataStart, fileSize };
}

/** Parses the header of one safetensors file (reads only the header). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openForReading(path);
  try {
    return await parseHeader(fh, path);
  } finally {
    await fh.close();
  }
}

export async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'the file does not exist' : (err as Error).message;
    throw new CheckpointError(`cannot open ${path}: ${why}`, path, undefined, { cause: err });
  }
}
