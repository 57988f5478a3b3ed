/**
 * Reading and writing safetensors files without dependencies.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape, data_offsets:
 * [begin, end]}, __metadata__?: {string: string}}`), then the tensor bytes, little-endian, where each tensor's
 * offsets are relative to the end of the header.
 *
 * The reader opens a checkpoint directory (single file or sharded with `model.safetensors.index.json`), parses
 * only the headers, and reads one tensor at a time with positioned reads, so converting a 15.8 GB checkpoint never
 * holds more than the tensor being converted. Writing lives in safetensors-write.ts.
 */

import { createHash } from 'node:crypto';
import { type FileHandle, open, readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { UserFacingError } from '../errors.js';
import { bf16ToF32, f16ToF32 } from '../util/half-float.js';

export { bf16ToF32, f16ToF32, f32ToBf16Bits, f32ToF16Bits } from '../util/half-float.js';
export {
  safetensorsFileSize,
  safetensorsHeaderBytes,
  type TensorChunk,
  type TensorDataSource,
  type TensorToWrite,
  type WritableDtype,
  type WriteProgress,
  type WriteSafetensorsOptions,
  writeSafetensors,
} from './safetensors-write.js';

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

const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
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

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** Base class of every error about a checkpoint's files or contents. */
export class CheckpointError extends UserFacingError {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
    options?: { cause?: unknown },
  ) {
    super('checkpoint', message, options);
  }
}

export class NoCheckpointError extends CheckpointError {
  override name = 'NoCheckpointError';
  constructor(readonly dir: string) {
    super(
      `no safetensors checkpoint in ${dir}: expected ${SINGLE_FILE}, ${INDEX_FILE} with its shards, or a single *.safetensors file (PyTorch .bin checkpoints are not supported; download the safetensors files)`,
      dir,
    );
  }
}

export class MissingTensorError extends CheckpointError {
  override name = 'MissingTensorError';
  constructor(tensor: string, where: string) {
    super(
      `tensor "${tensor}" is not in ${where}; the checkpoint may not be a Blip2ForConditionalGeneration (BLIP-2 with a T5/FlanT5 language model) saved by Hugging Face transformers`,
      where,
      tensor,
    );
  }
}

export class ShapeMismatchError extends CheckpointError {
  override name = 'ShapeMismatchError';
  constructor(
    tensor: string,
    file: string,
    readonly actual: readonly number[],
    readonly expected: readonly number[],
  ) {
    super(
      `tensor "${tensor}" in ${file} has shape [${actual.join(', ')}] but config.json implies [${expected.join(', ')}]; config.json and the weights do not belong together`,
      file,
      tensor,
    );
  }
}

export class UnsupportedDtypeError extends CheckpointError {
  override name = 'UnsupportedDtypeError';
  constructor(
    tensor: string,
    file: string,
    readonly dtype: string,
  ) {
    super(
      `tensor "${tensor}" in ${file} has dtype ${dtype}; only ${FLOAT_DTYPES.join(', ')} weights are supported`,
      file,
      tensor,
    );
  }
}

export class TruncatedFileError extends CheckpointError {
  override name = 'TruncatedFileError';
  constructor(
    file: string,
    readonly expectedBytes: number,
    readonly actualBytes: number,
    tensor?: string,
  ) {
    super(
      `${file} is truncated: its header says the data ends at byte ${expectedBytes}${tensor ? ` (tensor "${tensor}")` : ''} but the file has ${actualBytes} bytes; the download was probably interrupted, fetch the file again`,
      file,
      tensor,
    );
  }
}

export class InvalidHeaderError extends CheckpointError {
  override name = 'InvalidHeaderError';
  constructor(file: string, problem: string, tensor?: string) {
    super(`${file} is not a valid safetensors file: ${problem}`, file, tensor);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Header parsing

export interface SafetensorsHeader {
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  /** The raw JSON header bytes (without the 8-byte length). */
  headerBytes: Uint8Array;
  /** Byte offset where tensor data starts (8 + header length). */
  dataStart: number;
  fileSize: number;
}

async function readFully(fh: FileHandle, target: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(target.length - done, IO_CHUNK);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) throw new TruncatedFileError(file, position + target.length, position + done);
    done += bytesRead;
  }
}

export function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

async function parseHeader(fh: FileHandle, file: string): Promise<SafetensorsHeader> {
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

async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'the file does not exist' : (err as Error).message;
    throw new CheckpointError(`cannot open ${path}: ${why}`, path, undefined, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint reader

interface Shard {
  path: string;
  handle: FileHandle;
  header: SafetensorsHeader;
}

function shapeEquals(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * A Hugging Face safetensors checkpoint directory, opened for reading one tensor at a time. File handles stay
 * open until `close()`.
 */
export class SafetensorsCheckpoint {
  private readonly used = new Set<string>();
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly shards: Shard[],
    private readonly tensors: Map<string, TensorInfo>,
    private readonly configBytes: Uint8Array | undefined,
  ) {}

  /**
   * Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`, or the only
   * `*.safetensors` file in `dir`. Reads headers only.
   */
  static async open(dir: string): Promise<SafetensorsCheckpoint> {
    const files = await findCheckpointFiles(dir);
    const shards: Shard[] = [];
    try {
      for (const path of files.shards) {
        const handle = await openForReading(path);
        let header: SafetensorsHeader;
        try {
          header = await parseHeader(handle, path);
        } catch (err) {
          await handle.close();
          throw err;
        }
        shards.push({ path, handle, header });
      }
      const tensors = new Map<string, TensorInfo>();
      for (const shard of shards) {
        for (const t of shard.header.tensors) {
          const previous = tensors.get(t.name);
          if (previous) {
            throw new InvalidHeaderError(
              t.file,
              `tensor "${t.name}" also appears in ${previous.file}`,
              t.name,
            );
          }
          tensors.set(t.name, t);
        }
      }
      if (files.weightMap) {
        for (const [name, shardFile] of Object.entries(files.weightMap)) {
          const t = tensors.get(name);
          const expectedPath = join(dir, shardFile);
          if (!t) throw new MissingTensorError(name, `${expectedPath} (listed in ${INDEX_FILE})`);
          if (t.file !== expectedPath) {
            throw new InvalidHeaderError(
              t.file,
              `${INDEX_FILE} places tensor "${name}" in ${shardFile}`,
              name,
            );
          }
        }
      }
      let configBytes: Uint8Array | undefined;
      try {
        configBytes = await readFile(join(dir, 'config.json'));
      } catch {
        configBytes = undefined;
      }
      return new SafetensorsCheckpoint(dir, shards, tensors, configBytes);
    } catch (err) {
      await Promise.allSettled(shards.map((s) => s.handle.close()));
      throw err;
    }
  }

  /** Paths of the safetensors files, in the order they were opened. */
  files(): string[] {
    return this.shards.map((s) => s.path);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new MissingTensorError(name, this.describe());
    return { ...t, shape: [...t.shape] };
  }

  /** Total bytes of tensor data over all shards. */
  dataBytes(): number {
    let total = 0;
    for (const t of this.tensors.values()) total += t.byteLength;
    return total;
  }

  /**
   * Reads one tensor as float32 with a positioned read (never the whole shard). F16 and BF16 are converted.
   * With `expectedShape`, a tensor of another shape is an error.
   */
  async read(name: string, expectedShape?: readonly number[]): Promise<Float32Array> {
    if (this.closed) throw new CheckpointError(`checkpoint ${this.dir} is closed`, this.dir, name);
    const t = this.tensors.get(name);
    if (!t) throw new MissingTensorError(name, this.describe());
    if (expectedShape && !shapeEquals(t.shape, expectedShape)) {
      throw new ShapeMismatchError(name, t.file, t.shape, expectedShape);
    }
    const shard = this.shards.find((s) => s.path === t.file)!;
    const count = elementCount(t.shape);
    let out: Float32Array;
    if (t.dtype === 'F32') {
      out = new Float32Array(count);
      await this.readInto(shard, t, new Uint8Array(out.buffer));
    } else if (t.dtype === 'F16' || t.dtype === 'BF16') {
      const bits = new Uint16Array(count);
      await this.readInto(shard, t, new Uint8Array(bits.buffer));
      out = t.dtype === 'F16' ? f16ToF32(bits) : bf16ToF32(bits);
    } else {
      throw new UnsupportedDtypeError(name, t.file, t.dtype);
    }
    this.used.add(name);
    return out;
  }

  private async readInto(shard: Shard, t: TensorInfo, target: Uint8Array): Promise<void> {
    try {
      await readFully(shard.handle, target, t.byteOffset, t.file);
    } catch (err) {
      if (err instanceof TruncatedFileError) {
        // The file shrank after it was opened.
        throw new TruncatedFileError(t.file, t.byteOffset + t.byteLength, err.actualBytes, t.name);
      }
      throw err;
    }
  }

  /** Tensors never passed to `read`, in checkpoint order (e.g. the Q-Former's unused text branch). */
  unusedNames(): string[] {
    return this.names().filter((n) => !this.used.has(n));
  }

  /**
   * A fingerprint of the checkpoint for the converted model's manifest: sha256 (hex) over config.json's bytes
   * and, per safetensors file, its name, header bytes and size. It is fast because it never hashes the tensor
   * data: it catches a different or re-saved checkpoint, a changed config and a truncated download, but not a
   * silently corrupted weight byte (compare the files' own sha256 for that).
   */
  checksum(): string {
    const h = createHash('sha256');
    const u64 = Buffer.alloc(8);
    const addBytes = (b: Uint8Array): void => {
      u64.writeBigUInt64LE(BigInt(b.length));
      h.update(u64);
      h.update(b);
    };
    addBytes(this.configBytes ?? new Uint8Array());
    const sorted = [...this.shards].sort((a, b) => (basename(a.path) < basename(b.path) ? -1 : 1));
    for (const s of sorted) {
      addBytes(Buffer.from(basename(s.path), 'utf8'));
      addBytes(s.header.headerBytes);
      u64.writeBigUInt64LE(BigInt(s.header.fileSize));
      h.update(u64);
    }
    return h.digest('hex');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(this.shards.map((s) => s.handle.close()));
  }

  private describe(): string {
    const files = this.shards.map((s) => basename(s.path));
    return `the checkpoint at ${this.dir} (${files.length === 1 ? files[0] : `${files.length} shards`}, ${this.tensors.size} tensors)`;
  }
}

async function findCheckpointFiles(
  dir: string,
): Promise<{ shards: string[]; weightMap?: Record<string, string> }> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NoCheckpointError(dir);
    throw new CheckpointError(`cannot read ${dir}: ${(err as Error).message}`, dir, undefined, {
      cause: err,
    });
  }
  if (entries.includes(SINGLE_FILE)) return { shards: [join(dir, SINGLE_FILE)] };
  if (entries.includes(INDEX_FILE)) {
    const indexPath = join(dir, INDEX_FILE);
    let index: unknown;
    try {
      index = JSON.parse(await readFile(indexPath, 'utf8'));
    } catch (err) {
      throw new CheckpointError(
        `${indexPath} is not valid JSON: ${(err as Error).message}`,
        indexPath,
        undefined,
        {
          cause: err,
        },
      );
    }
    const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
    if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
      throw new CheckpointError(`${indexPath} has no "weight_map" object`, indexPath);
    }
    const map: Record<string, string> = {};
    for (const [name, file] of Object.entries(weightMap)) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
        throw new CheckpointError(
          `${indexPath}: weight_map entry for "${name}" is not a file name`,
          indexPath,
          name,
        );
      }
      map[name] = file;
    }
    const shards = [...new Set(Object.values(map))].sort().map((f) => join(dir, f));
    if (shards.length === 0) throw new CheckpointError(`${indexPath} lists no shard files`, indexPath);
    return { shards, weightMap: map };
  }
  const candidates = entries.filter((e) => e.endsWith('.safetensors')).sort();
  if (candidates.length === 1) return { shards: [join(dir, candidates[0]!)] };
  if (candidates.length > 1) {
    throw new CheckpointError(
      `${dir} has several .safetensors files (${candidates.join(', ')}) but neither ${SINGLE_FILE} nor ${INDEX_FILE}; cannot tell which hold the model`,
      dir,
    );
  }
  throw new NoCheckpointError(dir);
}

// ---------------------------------------------------------------------------------------------------------------
// Small-file convenience reader

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
