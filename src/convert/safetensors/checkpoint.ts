/**
 * A checkpoint directory (single file or sharded with `model.safetensors.index.json`) opened for reading one
 * tensor at a time with positioned reads, so converting a 15.8 GB checkpoint never holds more than the tensor being
 * converted.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { bf16ToF32, f16ToF32 } from '../../util/half-float.js';
import {
  CheckpointError,
  InvalidHeaderError,
  MissingTensorError,
  NoCheckpointError,
  ShapeMismatchError,
  TruncatedFileError,
  UnsupportedDtypeError,
} from './errors.js';
import { elementCount, INDEX_FILE, SINGLE_FILE, type TensorInfo } from './format.js';
import { openForReading, parseHeader, readFully, type SafetensorsHeader } from './header.js';

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
