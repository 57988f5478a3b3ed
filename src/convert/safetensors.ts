/**
 * Reading and writing safetensors files without dependencies.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape, data_offsets:
 * [begin, end]}, __metadata__?: {string: string}}`), then the tensor bytes, little-endian, where each tensor's
 * offsets are relative to the end of the header.
 *
 * The reader opens a checkpoint directory (single file or sharded with `model.safetensors.index.json`), parses
 * only the headers, and reads one tensor at a time with positioned reads, so converting a 15.8 GB checkpoint never
 * holds more than the tensor being converted. The writer streams tensors to disk one at a time and accepts
 * tensors whose data is produced lazily.
 */

import { createHash } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

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
const IO_CHUNK = 1 << 30;

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
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
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

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function elementCount(shape: readonly number[]): number {
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
// Float conversion

let halfTable: Float32Array | undefined;

/** All 65,536 half-precision values as float32 (256 KB, built once): exact and faster than bit twiddling. */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let value: number;
    if (exp === 0) value = mant * 2 ** -24;
    else if (exp === 31) value = mant === 0 ? Number.POSITIVE_INFINITY : Number.NaN;
    else value = (1 + mant / 1024) * 2 ** (exp - 15);
    table[h] = sign * value;
  }
  halfTable = table;
  return table;
}

/** IEEE half-precision bits → float32. */
export function f16ToF32(bits: Uint16Array, out = new Float32Array(bits.length)): Float32Array {
  const table = halfToFloatTable();
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

/** bfloat16 bits → float32 (exact: bfloat16 is the top half of a float32). */
export function bf16ToF32(bits: Uint16Array, out = new Float32Array(bits.length)): Float32Array {
  const u32 = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i]! << 16;
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half bits, round to nearest even (overflow → ±Inf, NaN stays NaN). */
export function f32ToF16Bits(values: ArrayLike<number>, out = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) {
    f32Scratch[0] = values[i]!;
    const x = u32Scratch[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) {
      h = sign | 0x7c00 | (mant ? 0x200 : 0);
    } else {
      const e = exp - 127 + 15;
      if (e >= 31) {
        h = sign | 0x7c00;
      } else if (e <= 0) {
        if (e < -10) {
          h = sign;
        } else {
          // Subnormal half: shift the implicit-one mantissa right and round to nearest even.
          const m = mant | 0x800000;
          const shift = 14 - e;
          const half = 1 << (shift - 1);
          const rest = m & ((1 << shift) - 1);
          let r = m >>> shift;
          if (rest > half || (rest === half && r & 1)) r += 1;
          h = sign | r;
        }
      } else {
        let r = (e << 10) | (mant >>> 13);
        const rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r += 1; // may carry into the exponent: still correct
        h = sign | r;
      }
    }
    out[i] = h;
  }
  return out;
}

/** float32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16Bits(values: ArrayLike<number>, out = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) {
    f32Scratch[0] = values[i]!;
    const x = u32Scratch[0]!;
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
      out[i] = (x >>> 16) | 0x40;
    } else {
      out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
  return out;
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

// ---------------------------------------------------------------------------------------------------------------
// Writer

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
