import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Keyv from 'keyv';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type CachedEmbeddings,
  type CacheLogger,
  decodeEmbeddings,
  encodeEmbeddings,
  ImageCache,
} from '../../src/engine/image-cache.js';
import {
  checkKeyv,
  closeKeyv,
  createKeyv,
  describeStore,
  SQLITE_FILE_NAME,
  type StoreOptions,
  StoreUnavailableError,
  sqliteFilePath,
} from '../../src/storage/keyv-store.js';

const NAMESPACE = 'image-cache';

/** Values chosen to catch any lossy path: signed zero, NaN, infinities, subnormals, extremes. */
function sampleEmbeddings(seed = 1): CachedEmbeddings {
  const dims = [1, 32, 24];
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  let x = seed;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    data[i] = (x / 2 ** 31 - 0.5) * 10;
  }
  data.set(
    [-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-45, 3.4028234663852886e38],
    0,
  );
  return { data, dims };
}

function bitsOf(data: Float32Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function expectSameEmbeddings(actual: CachedEmbeddings | undefined, expected: CachedEmbeddings): void {
  expect(actual).toBeDefined();
  expect(actual!.dims).toEqual(expected.dims);
  expect(actual!.data).toBeInstanceOf(Float32Array);
  // Bit-exact, so NaN and -0 count too.
  expect(bitsOf(actual!.data).equals(bitsOf(expected.data))).toBe(true);
}

function recordingLogger(): CacheLogger & { warnings: Array<{ message: string; details?: unknown }> } {
  const warnings: Array<{ message: string; details?: unknown }> = [];
  return { warnings, warn: (message, details) => warnings.push({ message, details }) };
}

const tmpDirs: string[] = [];
const openStores: Keyv[] = [];

function tmpDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'blip2-cache-test-'));
  tmpDirs.push(dir);
  return dir;
}

function openKeyv(options: StoreOptions, namespace = NAMESPACE): Keyv {
  const keyv = createKeyv(options, namespace);
  openStores.push(keyv);
  return keyv;
}

afterEach(async () => {
  await Promise.all(openStores.splice(0).map((k) => closeKeyv(k)));
});

afterAll(() => {
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('ImageCache.imageKey', () => {
  const bytes = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4]);

  it('is stable for the same bytes, model and preprocessing version', () => {
    const key = ImageCache.imageKey(bytes, 'blip2-tiny', 'pre-1');
    expect(key).toMatch(/^img-[0-9a-f]{64}$/);
    expect(ImageCache.imageKey(Uint8Array.from(bytes), 'blip2-tiny', 'pre-1')).toBe(key);
    expect(ImageCache.imageKey(Buffer.from(bytes), 'blip2-tiny', 'pre-1')).toBe(key);
  });

  it('changes with the bytes, the model id or the preprocessing version', () => {
    const key = ImageCache.imageKey(bytes, 'blip2-tiny', 'pre-1');
    const otherBytes = Uint8Array.from(bytes);
    otherBytes[7] = 5;
    const keys = [
      key,
      ImageCache.imageKey(otherBytes, 'blip2-tiny', 'pre-1'),
      ImageCache.imageKey(bytes, 'blip2-opt', 'pre-1'),
      ImageCache.imageKey(bytes, 'blip2-tiny', 'pre-2'),
      // Shifting characters between model id and version must not collide.
      ImageCache.imageKey(bytes, 'blip2-tiny', 'pre-1'.slice(1)),
      ImageCache.imageKey(bytes, 'blip2-tinyp', 're-1'),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    expect(ImageCache.imageKey(bytes, 'ab', 'c')).not.toBe(ImageCache.imageKey(bytes, 'a', 'bc'));
  });
});

describe('embedding record format', () => {
  it('round-trips bit-exactly', () => {
    const value = sampleEmbeddings();
    const encoded = encodeEmbeddings(value);
    expect(encoded.subarray(0, 4).toString('latin1')).toBe('B2QE');
    expect(encoded.length).toBe(8 + 4 * 3 + 4 * value.data.length + 8);
    expectSameEmbeddings(decodeEmbeddings(encoded), value);
  });

  it('rejects a record with any damage', () => {
    const encoded = encodeEmbeddings(sampleEmbeddings());
    const flipped = Buffer.from(encoded);
    flipped[100] = flipped[100]! ^ 1;
    expect(() => decodeEmbeddings(flipped)).toThrow(/checksum/);
    expect(() => decodeEmbeddings(encoded.subarray(0, encoded.length - 1))).toThrow(/length/);
    const badMagic = Buffer.from(encoded);
    badMagic[0] = 0x41;
    expect(() => decodeEmbeddings(badMagic)).toThrow(/magic/);
    const badVersion = Buffer.from(encoded);
    badVersion.writeUInt16LE(9, 4);
    expect(() => decodeEmbeddings(badVersion)).toThrow(/version/);
    expect(() => decodeEmbeddings(new Uint8Array(3))).toThrow(/short/);
  });

  it('refuses inconsistent values when writing', () => {
    expect(() => encodeEmbeddings({ data: new Float32Array(5), dims: [2, 3] })).toThrow(/hold 6 values/);
    expect(() => encodeEmbeddings({ data: new Float32Array(0), dims: [] })).toThrow(/dims/);
  });
});

/** The same behaviour on every backend; `open` returns a fresh Keyv on the store under test. */
function cacheContract(open: () => Keyv | Promise<Keyv>) {
  it('misses, then hits with identical floats; has and delete work', async () => {
    const cache = new ImageCache(await open());
    const value = sampleEmbeddings();
    const key = ImageCache.imageKey(new Uint8Array([1, 2, 3]), 'm', 'p');
    expect(await cache.get(key)).toBeUndefined();
    expect(await cache.has(key)).toBe(false);
    expect(await cache.set(key, value)).toBe(true);
    expectSameEmbeddings(await cache.get(key), value);
    expect(await cache.has(key)).toBe(true);
    expect(await cache.delete(key)).toBe(true);
    expect(await cache.get(key)).toBeUndefined();
  });

  it('expires entries after their TTL; 0 means never', async () => {
    // keyv dates entries with Date.now(): a fake clock (Date only; I/O timers stay real) instead of waiting.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const cache = new ImageCache(await open(), { ttlMs: 60_000 });
      const value = sampleEmbeddings(2);
      await cache.set('img-short', value);
      await cache.set('img-forever', value, 0);
      vi.setSystemTime(Date.now() + 59_000);
      expectSameEmbeddings(await cache.get('img-short'), value);
      vi.setSystemTime(Date.now() + 2_000);
      expect(await cache.get('img-short')).toBeUndefined();
      expect(await cache.has('img-short')).toBe(false);
      vi.setSystemTime(Date.now() + 365 * 24 * 3600 * 1000);
      expectSameEmbeddings(await cache.get('img-forever'), value);
    } finally {
      vi.useRealTimers();
    }
  });

  it('drops a corrupted entry with a warning and reports a miss', async () => {
    const keyv = await open();
    const logger = recordingLogger();
    const cache = new ImageCache(keyv, { logger });
    const good = encodeEmbeddings(sampleEmbeddings());
    const flipped = Buffer.from(good);
    flipped[50] = flipped[50]! ^ 0x80;
    const garbage: Array<[string, unknown]> = [
      ['not-base64', 'garbage!'],
      ['bad-magic', Buffer.from('XXXXXXXXXXXXXXXXXXXX').toString('base64')],
      ['bit-flip', flipped.toString('base64')],
      ['truncated', good.subarray(0, good.length - 12).toString('base64')],
      ['wrong-type', { data: [1, 2, 3], dims: [3] }],
      ['number', 42],
    ];
    for (const [name, value] of garbage) {
      const key = `img-${name}`;
      await keyv.set(key, value);
      expect(await cache.get(key), name).toBeUndefined();
      expect(await keyv.get(key), `${name} removed`).toBeUndefined();
    }
    expect(logger.warnings).toHaveLength(garbage.length);
    expect(logger.warnings[0]!.message).toMatch(/corrupted entry/);
    expect(logger.warnings[0]!.details).toMatchObject({ key: 'img-not-base64' });
    // After the miss the engine recomputes and stores again: that entry is served normally.
    const value = sampleEmbeddings(3);
    await cache.set('img-bit-flip', value);
    expectSameEmbeddings(await cache.get('img-bit-flip'), value);
  });
}

describe('ImageCache on the memory store', () => {
  cacheContract(() => openKeyv({ kind: 'memory' }));
});

describe('ImageCache on the SQLite store', () => {
  cacheContract(() => openKeyv({ kind: 'sqlite', dataDir: tmpDataDir() }));

  it('creates the data dir and survives a restart', async () => {
    const dataDir = join(tmpDataDir(), 'nested', 'data');
    const value = sampleEmbeddings(4);
    const key = ImageCache.imageKey(new Uint8Array([9, 9, 9]), 'blip2-tiny', 'pre-1');

    const first = createKeyv({ dataDir }, NAMESPACE);
    await new ImageCache(first).set(key, value);
    await closeKeyv(first);
    await closeKeyv(first); // twice is harmless
    expect(existsSync(join(dataDir, SQLITE_FILE_NAME))).toBe(true);

    const second = openKeyv({ kind: 'sqlite', dataDir });
    expectSameEmbeddings(await new ImageCache(second).get(key), value);
  });

  it('drops an entry that is not even valid Keyv JSON', async () => {
    const keyv = openKeyv({ kind: 'sqlite', dataDir: tmpDataDir() });
    const logger = recordingLogger();
    const cache = new ImageCache(keyv, { logger });
    // Straight into the table, bypassing Keyv's serializer, as a damaged file would look.
    await keyv.store.set(`${NAMESPACE}:img-raw`, '{"value": "trunc');
    expect(await cache.get('img-raw')).toBeUndefined();
    expect(await keyv.store.get(`${NAMESPACE}:img-raw`)).toBeUndefined();
    expect(logger.warnings).toHaveLength(1);
  });

  it('uses the store default TTL unless the cache or the call sets one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const keyv = openKeyv({ kind: 'sqlite', dataDir: tmpDataDir(), ttlMs: 60_000 });
      const cache = new ImageCache(keyv);
      const value = sampleEmbeddings(5);
      await cache.set('img-default', value);
      await cache.set('img-long', value, 3_600_000);
      vi.setSystemTime(Date.now() + 61_000);
      expect(await cache.get('img-default')).toBeUndefined();
      expectSameEmbeddings(await cache.get('img-long'), value);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps namespaces on one file apart', async () => {
    const dataDir = tmpDataDir();
    const images = openKeyv({ dataDir }, 'image-cache');
    const chat = openKeyv({ dataDir }, 'conversations');
    await images.set('same-key', 'image');
    await chat.set('same-key', 'chat');
    expect(await images.get('same-key')).toBe('image');
    expect(await chat.get('same-key')).toBe('chat');
  });
});

describe('a store that cannot be used', () => {
  it('costs cache misses and warnings, never a crash, and checkKeyv says why', async () => {
    const notAFile = tmpDataDir(); // a directory where the SQLite file should be
    const errors: unknown[] = [];
    const options: StoreOptions = { sqlitePath: notAFile };
    const keyv = createKeyv(options, NAMESPACE, { onError: (error) => errors.push(error) });
    openStores.push(keyv);
    // Let the background open fail before anything uses the store: that failure must not be unhandled.
    await sleep(100);
    const logger = recordingLogger();
    const cache = new ImageCache(keyv, { logger });
    expect(await cache.get('img-x')).toBeUndefined();
    expect(await cache.set('img-x', sampleEmbeddings())).toBe(false);
    expect(logger.warnings.map((w) => w.message)).toEqual(['image cache: could not store an entry']);
    expect(errors.length).toBeGreaterThan(0);
    await expect(checkKeyv(keyv, options)).rejects.toThrow(
      new RegExp(`SQLite store at ${notAFile}.* cannot be used: SQLITE_CANTOPEN`),
    );
  });

  it('passes checkKeyv when it works', async () => {
    await checkKeyv(openKeyv({ kind: 'memory' }), { kind: 'memory' });
    const options = { dataDir: tmpDataDir() };
    await checkKeyv(openKeyv(options), options);
  });
});

describe('createKeyv', () => {
  it('explains missing settings', () => {
    expect(() => createKeyv({ kind: 'sqlite' }, NAMESPACE)).toThrow(/dataDir.*sqlitePath/);
    expect(() => createKeyv({ kind: 'redis' }, NAMESPACE)).toThrow(/needs a URL/);
    expect(() => createKeyv({ kind: 'redis', redisUrl: 'http://x' }, NAMESPACE)).toThrow(/redis:\/\//);
    expect(() => createKeyv({ kind: 'memory', ttlMs: -1 }, NAMESPACE)).toThrow(/ttlMs/);
    expect(() => createKeyv({ kind: 'memory' }, '')).toThrow(/namespace/);
  });

  it('puts the SQLite file where asked', () => {
    const dir = tmpDataDir();
    expect(sqliteFilePath({ dataDir: dir })).toBe(join(dir, SQLITE_FILE_NAME));
    expect(sqliteFilePath({ dataDir: dir, sqlitePath: join(dir, 'x.db') })).toBe(join(dir, 'x.db'));
  });

  it('describes stores without leaking a Redis password', () => {
    expect(describeStore({ redisUrl: 'redis://bot:hunter2@cache.local:6379/2' })).toBe(
      'Redis store at redis://bot:***@cache.local:6379/2',
    );
    expect(describeStore({ kind: 'memory' })).toBe('in-memory store');
    expect(describeStore({ dataDir: '/srv/bot' })).toBe(
      `SQLite store at ${join('/srv/bot', SQLITE_FILE_NAME)}`,
    );
  });
});

function which(binary: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const REDIS_SERVER = which('redis-server');
if (!REDIS_SERVER) {
  console.warn(
    '[tests] redis-server not on PATH; skipping the Redis image-cache tests (apt-get install redis-server)',
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function waitForPort(port: number, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port}`);
    await sleep(50);
  }
}

describe.skipIf(!REDIS_SERVER)('ImageCache on the Redis store', () => {
  let server: ChildProcess | undefined;
  let redisUrl = '';

  beforeAll(async () => {
    const port = await freePort();
    server = spawn(
      REDIS_SERVER!,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    redisUrl = `redis://127.0.0.1:${port}`;
    await waitForPort(port, 10_000);
  });

  afterAll(async () => {
    if (!server || server.exitCode !== null) return;
    const exited = new Promise((resolve) => server!.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  });

  let run = 0;
  // A namespace per test keeps the tests independent on the one server.
  cacheContract(() => openKeyv({ redisUrl }, `image-cache-${++run}`));

  it('is chosen by default when a URL is given, and survives reconnecting', async () => {
    const value = sampleEmbeddings(6);
    const first = createKeyv({ redisUrl }, 'image-cache-restart');
    expect(first.store.constructor.name).toMatch(/Redis/);
    await new ImageCache(first).set('img-r', value);
    await closeKeyv(first);
    const second = openKeyv({ redisUrl }, 'image-cache-restart');
    expectSameEmbeddings(await new ImageCache(second).get('img-r'), value);
    await checkKeyv(second, { redisUrl });
  });
});

describe('a store that fails after start-up', () => {
  it('is "storage unavailable", never a miss that would read as an expired picture (item 6)', async () => {
    // A real Redis client against a port nobody listens on.
    const keyv = createKeyv({ kind: 'redis', redisUrl: 'redis://127.0.0.1:1' }, 'images', {
      onError: () => {},
    });
    try {
      const cache = new ImageCache(keyv);
      const err = await cache.get('img-0').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as StoreUnavailableError).userMessage).toMatch(/storage is unavailable right now/);
    } finally {
      await closeKeyv(keyv);
    }
  });
});
