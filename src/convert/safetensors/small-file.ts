/** Every tensor of a small safetensors file at once (golden outputs, an `inspect` dump), as typed arrays. */
import { bf16ToF32, f16ToF32 } from '../../util/half-float.js';
import { openForReading, parseHeader, readFully } from './header.js';

export type TensorArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

export interface LoadedTensor {
  dtype: string;
  shape: number[];
  /**
   * F32/F16/BF16 → Float32Array (half types converted), F64 → Float64Array, I64 → BigInt64Array, U64 →
   * BigUint64Array, I32/U32/I16/U16/I8 → the matching typed array, U8/BOOL and anything else → Uint8Array (raw).
   */
  data: TensorArray;
}

function toTypedArray(dtype: string, bytes: Uint8Array): TensorArray {
  // `bytes` is a private, aligned copy, so typed views over its buffer are safe.
  const { buffer, byteOffset, byteLength } = bytes;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer, byteOffset, byteLength / 4);
    case 'F16':
      return f16ToF32(new Uint16Array(buffer, byteOffset, byteLength / 2));
    case 'BF16':
      return bf16ToF32(new Uint16Array(buffer, byteOffset, byteLength / 2));
    case 'F64':
      return new Float64Array(buffer, byteOffset, byteLength / 8);
    case 'I64':
      return new BigInt64Array(buffer, byteOffset, byteLength / 8);
    case 'U64':
      return new BigUint64Array(buffer, byteOffset, byteLength / 8);
    case 'I32':
      return new Int32Array(buffer, byteOffset, byteLength / 4);
    case 'U32':
      return new Uint32Array(buffer, byteOffset, byteLength / 4);
    case 'I16':
      return new Int16Array(buffer, byteOffset, byteLength / 2);
    case 'U16':
      return new Uint16Array(buffer, byteOffset, byteLength / 2);
    case 'I8':
      return new Int8Array(buffer, byteOffset, byteLength);
    default:
      return bytes;
  }
}

/** Every tensor of a small safetensors file (e.g. golden outputs or an `inspect` dump), keyed by name. */
export async function readSafetensorsFile(path: string): Promise<Map<string, LoadedTensor>> {
  const fh = await openForReading(path);
  try {
    const header = await parseHeader(fh, path);
    const out = new Map<string, LoadedTensor>();
    for (const t of header.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await readFully(fh, bytes, t.byteOffset, path);
      out.set(t.name, { dtype: t.dtype, shape: t.shape, data: toTypedArray(t.dtype, bytes) });
    }
    return out;
  } finally {
    await fh.close();
  }
}
