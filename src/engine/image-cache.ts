/**
 * Remembers each image's projected query embeddings (the Q-Former output after the language projection), so a
 * follow-up question about the same picture skips the vision encoder and the Q-Former entirely.
 *
 * Entries are stored as base64 text of a small binary record, which every Keyv backend round-trips unchanged:
 *
 *   offset  size      field
 *   0       4         magic "B2QE"
 *   4       2         format version (u16 LE)
 *   6       2         rank (u16 LE)
 *   8       4*rank    dims (u32 LE each)
 *   ...     4*n       data, float32 LE, n = product of dims
 *   ...     8         first 8 bytes of sha256 over everything before
 *
 * A cache is allowed to lose data but never to serve wrong data: anything that does not decode exactly is
 * deleted and treated as a miss.
 */

import { createHash } from 'node:crypto';
import type Keyv from 'keyv';
import { StoreUnavailableError } from '../storage/keyv-store.js';
import type { Logger } from '../util/logger.js';

export interface CachedEmbeddings {
  data: Float32Array;
  dims: number[];
}

/** The bot's Logger (src/util/logger.ts), or anything with its `warn`. */
export type CacheLogger = Pick<Logger, 'warn'>;

export interface ImageCacheOptions {
  /** Default time to live of new entries; 0 = never expire; undefined = the Keyv instance's own default. */
  ttlMs?: number;
  logger?: CacheLogger;
}

export class CacheEntryError extends Error {
  override name = 'CacheEntryError';
}

const MAGIC = Buffer.from('B2QE', 'latin1');
const FORMAT_VERSION = 1;
const HEADER_BYTES = 8;
const CHECKSUM_BYTES = 8;
const MAX_RANK = 8;
/** 1 GiB of floats: far above any BLIP-2 (32 queries × 4096 for the largest T5), far below an allocation crash. */
const MAX_ELEMENTS = 2 ** 28;
export const KEY_PREFIX = 'img-';

const silentLogger: CacheLogger = { warn() {} };

export class ImageCache {
  readonly #keyv: Keyv;
  readonly #ttlMs: number | undefined;
  readonly #logger: CacheLogger;

  constructor(keyv: Keyv, options: ImageCacheOptions = {}) {
    if (options.ttlMs !== undefined) checkTtl(options.ttlMs);
    this.#keyv = keyv;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * `img-` + sha256 over the model id, the preprocessing version and the image bytes. The two strings are
   * length-prefixed so that no pair of (model id, version) can produce the same input as another.
   */
  static imageKey(bytes: Uint8Array, modelId: string, preprocessVersion: string): string {
    const hash = createHash('sha256');
    hash.update('blip2-bot/image-key/1\0');
    for (const part of [modelId, preprocessVersion]) {
      const encoded = Buffer.from(part, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32LE(encoded.length);
      hash.update(length);
      hash.update(encoded);
    }
    hash.update(bytes);
    return KEY_PREFIX + hash.digest('hex');
  }

  /** The cached embeddings, or undefined on a miss, an expired entry, or an entry that failed to decode. */
  async get(key: string): Promise<CachedEmbeddings | undefined> {
    let stored: unknown;
    // Keyv reports a failing store (Redis down, SQLite unreadable) as an 'error' event and a miss; a miss would
    // tell the person their picture "expired", so a store failure is an error of its own.
    let storeFailure: unknown;
    const onError = (error: unknown) => {
      storeFailure ??= error ?? 'store error';
    };
    this.#keyv.on('error', onError);
    try {
      stored = await this.#keyv.get(key);
    } catch (error) {
      // Keyv throws when the stored text is not even its own JSON envelope.
      await this.#discard(key, `unreadable entry (${describe(error)})`);
      return undefined;
    } finally {
      this.#keyv.off('error', onError);
    }
    if (storeFailure !== undefined) {
      throw new StoreUnavailableError(`image cache: the store failed (${describe(storeFailure)})`, {
        cause: storeFailure,
        userMessage:
          "Sorry, my storage is unavailable right now, so I can't look at that picture. Please try again in a " +
          'little while.',
      });
    }
    if (stored === undefined || stored === null) return undefined;
    try {
      return decodeEmbeddings(toBytes(stored));
    } catch (error) {
      await this.#discard(key, describe(error));
      return undefined;
    }
  }

  /**
   * Stores the embeddings. A failing store is reported and returns false rather than failing the request that
   * produced them: the answer is still good, only the next one will be slower.
   */
  async set(key: string, value: CachedEmbeddings, ttlMs?: number): Promise<boolean> {
    if (ttlMs !== undefined) checkTtl(ttlMs);
    const encoded = encodeEmbeddings(value).toString('base64');
    try {
      const ok = await this.#keyv.set(key, encoded, ttlMs ?? this.#ttlMs);
      if (!ok) this.#logger.warn('image cache: could not store an entry', { key });
      return ok;
    } catch (error) {
      this.#logger.warn('image cache: could not store an entry', { key, error: describe(error) });
      return false;
    }
  }

  /** True only when `get` would return a value (Keyv's own `has` ignores expiry on some stores). */
  async has(key: string): Promise<boolean> {
    return (await this.get(key)) !== undefined;
  }

  async delete(key: string): Promise<boolean> {
    return this.#keyv.delete(key);
  }

  async #discard(key: string, reason: string): Promise<void> {
    this.#logger.warn('image cache: dropped a corrupted entry; the image will be encoded again', {
      key,
      reason,
    });
    try {
      await this.#keyv.delete(key);
    } catch (error) {
      this.#logger.warn('image cache: could not delete a corrupted entry', { key, error: describe(error) });
    }
  }
}

export function encodeEmbeddings(value: CachedEmbeddings): Buffer {
  const { data, dims } = value;
  if (!(data instanceof Float32Array)) throw new TypeError('embeddings data must be a Float32Array');
  if (dims.length === 0 || dims.length > MAX_RANK) {
    throw new RangeError(`embeddings must have 1 to ${MAX_RANK} dims, got ${dims.length}`);
  }
  const count = elementCount(dims);
  if (count !== data.length) {
    throw new RangeError(`dims [${dims.join(', ')}] hold ${count} values but data has ${data.length}`);
  }
  const bodyBytes = HEADER_BYTES + 4 * dims.length + 4 * count;
  const out = Buffer.alloc(bodyBytes + CHECKSUM_BYTES);
  MAGIC.copy(out, 0);
  out.writeUInt16LE(FORMAT_VERSION, 4);
  out.writeUInt16LE(dims.length, 6);
  let offset = HEADER_BYTES;
  for (const d of dims) {
    out.writeUInt32LE(d, offset);
    offset += 4;
  }
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < count; i++) view.setFloat32(offset + 4 * i, data[i]!, true);
  checksum(out.subarray(0, bodyBytes)).copy(out, bodyBytes);
  return out;
}

/** Inverse of `encodeEmbeddings`; throws CacheEntryError on anything that is not an intact record. */
export function decodeEmbeddings(bytes: Uint8Array): CachedEmbeddings {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < HEADER_BYTES + CHECKSUM_BYTES)
    throw new CacheEntryError(`entry too short (${buf.length} bytes)`);
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new CacheEntryError('bad magic');
  const version = buf.readUInt16LE(4);
  if (version !== FORMAT_VERSION) throw new CacheEntryError(`unknown format version ${version}`);
  const rank = buf.readUInt16LE(6);
  if (rank === 0 || rank > MAX_RANK) throw new CacheEntryError(`bad rank ${rank}`);
  if (buf.length < HEADER_BYTES + 4 * rank + CHECKSUM_BYTES)
    throw new CacheEntryError('entry too short for its dims');
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(buf.readUInt32LE(HEADER_BYTES + 4 * i));
  let count: number;
  try {
    count = elementCount(dims);
  } catch (error) {
    throw new CacheEntryError(describe(error));
  }
  const dataOffset = HEADER_BYTES + 4 * rank;
  const bodyBytes = dataOffset + 4 * count;
  if (buf.length !== bodyBytes + CHECKSUM_BYTES) {
    throw new CacheEntryError(`length ${buf.length} does not match dims [${dims.join(', ')}]`);
  }
  if (!checksum(buf.subarray(0, bodyBytes)).equals(buf.subarray(bodyBytes))) {
    throw new CacheEntryError('checksum mismatch');
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = view.getFloat32(dataOffset + 4 * i, true);
  return { data, dims };
}

function elementCount(dims: readonly number[]): number {
  let count = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 1 || d > 0xffffffff) throw new RangeError(`bad dimension ${d}`);
    count *= d;
    if (count > MAX_ELEMENTS) throw new RangeError(`embeddings too large (over ${MAX_ELEMENTS} values)`);
  }
  return count;
}

function checksum(body: Uint8Array): Buffer {
  return createHash('sha256').update(body).digest().subarray(0, CHECKSUM_BYTES);
}

/** Entries are written as base64 text; a Buffer is accepted too (Keyv's serializer revives `:base64:` strings). */
function toBytes(stored: unknown): Uint8Array {
  if (typeof stored === 'string') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(stored)) throw new CacheEntryError('entry is not base64 text');
    return Buffer.from(stored, 'base64');
  }
  if (stored instanceof Uint8Array) return stored;
  throw new CacheEntryError(`unexpected entry type ${typeof stored}`);
}

function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs < 0) {
    throw new RangeError(`ttlMs must be a non-negative number of milliseconds, got ${ttlMs}`);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
