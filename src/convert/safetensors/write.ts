/**
 * Writing safetensors files: the header is computed from shapes first, then each tensor's bytes are streamed to a
 * temporary file (data may be produced lazily, chunk by chunk), renamed into place when complete.
 */
import { type FileHandle, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { f32ToBf16Bits, f32ToF16Bits } from '../../util/half-float.js';
import { DTYPE_BYTES, elementCount, IO_CHUNK, isShape } from './format.js';
import type { TensorArray } from './small-file.js';

export type WritableDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** One piece of a tensor's data, in row-major order. See `TensorToWrite.data` for what each dtype accepts. */
export type TensorChunk = TensorArray;

export type TensorDataSource =
  | TensorChunk
  | (() =>
      | TensorChunk
      | Promise<TensorChunk>
      | Iterable<TensorChunk>
      | AsyncIterable<TensorChunk>
      | Promise<Iterable<TensorChunk> | AsyncIterable<TensorChunk>>);

export interface TensorToWrite {
  name: string;
  dtype: WritableDtype;
  shape: readonly number[];
  /**
   * The values, or a function that produces them when the writer reaches this tensor: one typed array, or an
   * (async) iterable of chunks whose lengths add up to the element count. F32 takes Float32Array; F64
   * Float64Array; F16 and BF16 take Float32Array (rounded to nearest even) or Uint16Array (raw bits); I64
   * BigInt64Array; I32 Int32Array; I16 Int16Array; I8 Int8Array; U8 and BOOL Uint8Array. A chunk is still
   * being written while the next one is produced: a producer may refill a chunk's buffer two chunks later, not
   * for the very next chunk.
   */
  data: TensorDataSource;
}

export interface WriteProgress {
  tensor: string;
  /** Index of the tensor being written (0-based) and how many there are. */
  index: number;
  count: number;
  bytesWritten: number;
  totalBytes: number;
}

export interface WriteSafetensorsOptions {
  /** Called after every chunk written. */
  onProgress?: (p: WriteProgress) => void;
}

const ACCEPTED: Record<WritableDtype, readonly string[]> = {
  F64: ['Float64Array'],
  F32: ['Float32Array'],
  F16: ['Float32Array', 'Uint16Array'],
  BF16: ['Float32Array', 'Uint16Array'],
  I64: ['BigInt64Array'],
  I32: ['Int32Array'],
  I16: ['Int16Array'],
  I8: ['Int8Array'],
  U8: ['Uint8Array', 'Buffer'],
  BOOL: ['Uint8Array', 'Buffer'],
};

function chunkBytes(t: TensorToWrite, chunk: TensorChunk): Uint8Array {
  const kind = chunk.constructor.name;
  if (!ACCEPTED[t.dtype].includes(kind)) {
    throw new TypeError(
      `tensor "${t.name}": ${t.dtype} data must be ${ACCEPTED[t.dtype].join(' or ')}, got ${kind}`,
    );
  }
  if ((t.dtype === 'F16' || t.dtype === 'BF16') && chunk instanceof Float32Array) {
    const bits = t.dtype === 'F16' ? f32ToF16Bits(chunk) : f32ToBf16Bits(chunk);
    return new Uint8Array(bits.buffer);
  }
  return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function isChunk(value: unknown): value is TensorChunk {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

async function* chunksOf(source: TensorDataSource): AsyncGenerator<TensorChunk> {
  if (isChunk(source)) {
    yield source;
    return;
  }
  const produced = await source();
  if (isChunk(produced)) {
    yield produced;
    return;
  }
  yield* produced as AsyncIterable<TensorChunk>;
}

/** Builds the header for tensors written in the given order; sizes come from shapes alone. */
export function safetensorsHeaderBytes(
  tensors: readonly Pick<TensorToWrite, 'name' | 'dtype' | 'shape'>[],
  metadata?: Record<string, string>,
): { header: Uint8Array; dataBytes: number } {
  const json: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) json.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name))
      throw new Error(`tensor name "${t.name}" is reserved or repeated`);
    seen.add(t.name);
    const size = DTYPE_BYTES[t.dtype];
    if (size === undefined || !(t.dtype in ACCEPTED))
      throw new Error(`tensor "${t.name}": cannot write dtype ${t.dtype}`);
    if (!isShape(t.shape)) throw new Error(`tensor "${t.name}": invalid shape [${t.shape.join(', ')}]`);
    const bytes = elementCount(t.shape) * size;
    json[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = JSON.stringify(json);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  const raw = new TextEncoder().encode(text);
  const padded = Math.ceil(raw.length / 8) * 8;
  const header = new Uint8Array(padded).fill(0x20);
  header.set(raw);
  return { header, dataBytes: offset };
}

/** The size `writeSafetensors` will produce for these tensors, without producing any data. */
export function safetensorsFileSize(
  tensors: readonly Pick<TensorToWrite, 'name' | 'dtype' | 'shape'>[],
  metadata?: Record<string, string>,
): number {
  const { header, dataBytes } = safetensorsHeaderBytes(tensors, metadata);
  return 8 + header.length + dataBytes;
}

async function writeFully(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const len = Math.min(bytes.length - done, IO_CHUNK);
    const { bytesWritten } = await fh.write(bytes, done, len, position + done);
    done += bytesWritten;
  }
}

/**
 * Writes a safetensors file, one tensor (or one chunk of a tensor) at a time, in the given order. The header is
 * computed from names, dtypes and shapes before any data is produced, so tensors whose `data` is a function are
 * generated only when their turn comes and the writer never holds more than one tensor (or chunk). The file is
 * written under a temporary name and renamed at the end, so an interrupted write never leaves a file that looks
 * complete. Returns the number of bytes written.
 */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<TensorToWrite> | AsyncIterable<TensorToWrite>,
  metadata?: Record<string, string>,
  options: WriteSafetensorsOptions = {},
): Promise<number> {
  // Entries are collected first (cheap when `data` is lazy) because the header must precede the data.
  const list: TensorToWrite[] = [];
  for await (const t of tensors as AsyncIterable<TensorToWrite>) list.push(t);
  const { header, dataBytes } = safetensorsHeaderBytes(list, metadata);
  const totalBytes = 8 + header.length + dataBytes;

  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.partial-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
    await writeFully(fh, len, 0);
    await writeFully(fh, header, 8);
    let position = 8 + header.length;
    // One write stays in flight while the next chunk is produced, so generating data and disk I/O overlap.
    let inFlight: Promise<void> | undefined;
    try {
      for (let index = 0; index < list.length; index++) {
        const t = list[index]!;
        const expected = elementCount(t.shape) * DTYPE_BYTES[t.dtype]!;
        let written = 0;
        for await (const chunk of chunksOf(t.data)) {
          const bytes = chunkBytes(t, chunk);
          if (written + bytes.length > expected) {
            throw new Error(
              `tensor "${t.name}": data is longer than its shape [${t.shape.join(', ')}] allows`,
            );
          }
          await inFlight;
          inFlight = writeFully(fh, bytes, position);
          position += bytes.length;
          written += bytes.length;
          options.onProgress?.({
            tensor: t.name,
            index,
            count: list.length,
            bytesWritten: position,
            totalBytes,
          });
        }
        if (written !== expected) {
          throw new Error(
            `tensor "${t.name}": got ${written} bytes of data, its shape [${t.shape.join(', ')}] needs ${expected}`,
          );
        }
      }
      await inFlight;
    } finally {
      await inFlight?.catch(() => {});
    }
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await rename(tmp, path);
  return (await stat(path)).size;
}
