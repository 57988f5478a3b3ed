/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape,
 * data_offsets: [begin, end]}, __metadata__?: {string: string}}`), then the tensor bytes, little-endian, where each
 * tensor's offsets are relative to the end of the header. The constants and types both the header parser and the
 * readers use.
 */

/** The safetensors dtypes we know the element size of. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** Dtypes `SafetensorsCheckpoint.read` converts to float32. */
export const FLOAT_DTYPES = ['F32', 'F16', 'BF16'] as const;

/** A safetensors header may not be larger than this; real checkpoints' headers are well under 1 MB. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** A checkpoint directory's single file, or the index that maps tensors to shards. */
export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** Node's positioned reads and writes take at most 2 GiB - 1 per call. */
export const IO_CHUNK = 1 << 30;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Path of the file that holds the tensor. */
  file: string;
  /** Absolute byte offset of the tensor's data in `file`. */
  byteOffset: number;
  byteLength: number;
}

export function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
