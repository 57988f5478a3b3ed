/**
 * One place that turns store settings into a Keyv instance, so the image cache and the chat core's conversation
 * state share the same backends (each under its own namespace) and the same shutdown path.
 */

import { mkdirSync, type Stats, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import KeyvRedis from '@keyv/redis';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';
import { UserFacingError } from '../errors.js';

export type StoreKind = 'sqlite' | 'memory' | 'redis';

export interface StoreOptions {
  /** Default: 'redis' when `redisUrl` is given, otherwise 'sqlite'. */
  kind?: StoreKind;
  /** Directory for the SQLite file (`<dataDir>/blip2-bot.sqlite`); created when missing. */
  dataDir?: string;
  /** Explicit SQLite file path; wins over `dataDir`. Its directory is created when missing. */
  sqlitePath?: string;
  /** `redis://[user:pass@]host:port[/db]`; required for kind 'redis'. */
  redisUrl?: string;
  /** Default time to live of every entry; 0 or undefined = entries never expire. */
  ttlMs?: number;
}

export interface StoreHooks {
  /** Store errors (lost Redis connection, SQLite I/O). Keyv otherwise swallows them silently. */
  onError?: (error: unknown) => void;
}

export const SQLITE_FILE_NAME = 'blip2-bot.sqlite';

/** Several namespaces open the same file through separate connections; wait for a lock instead of failing. */
const SQLITE_BUSY_TIMEOUT_MS = 5_000;
/** A Redis that is down should cost each request a bounded wait, not hang it. */
const REDIS_CONNECT_TIMEOUT_MS = 3_000;

export function resolveStoreKind(options: StoreOptions): StoreKind {
  return options.kind ?? (options.redisUrl ? 'redis' : 'sqlite');
}

/** The SQLite file a store with these options uses. */
export function sqliteFilePath(options: StoreOptions): string {
  if (options.sqlitePath) return resolve(options.sqlitePath);
  if (options.dataDir) return resolve(options.dataDir, SQLITE_FILE_NAME);
  throw new Error(
    'The SQLite store needs a data directory (dataDir) or a file path (sqlitePath); ' +
      "set one, or choose the 'memory' or 'redis' store.",
  );
}

/**
 * A Keyv over the configured backend. Keys are prefixed with `namespace`, so several users of one file or one
 * Redis database do not collide. Call `closeKeyv` when done, or the SQLite handle / Redis socket keeps the
 * process alive.
 */
export function createKeyv(options: StoreOptions, namespace: string, hooks: StoreHooks = {}): Keyv {
  if (!namespace) throw new Error('createKeyv needs a non-empty namespace');
  if (options.ttlMs !== undefined && !(Number.isFinite(options.ttlMs) && options.ttlMs >= 0)) {
    throw new Error(`ttlMs must be a non-negative number of milliseconds, got ${options.ttlMs}`);
  }
  const ttl = options.ttlMs && options.ttlMs > 0 ? options.ttlMs : undefined;
  const keyv = buildKeyv(resolveStoreKind(options), options, namespace, ttl);
  if (hooks.onError) keyv.on('error', hooks.onError);
  return keyv;
}

function buildKeyv(kind: StoreKind, options: StoreOptions, namespace: string, ttl: number | undefined): Keyv {
  switch (kind) {
    case 'memory':
      return new Keyv({ namespace, ttl });
    case 'sqlite': {
      const file = sqliteFilePath(options);
      ensureDirectory(dirname(file));
      const store = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: SQLITE_BUSY_TIMEOUT_MS });
      // The adapter opens the file in the background and leaves a failure as an unhandled rejection, which would
      // end the process; attach a handler now. The failure still reaches Keyv's 'error' event and `checkKeyv`.
      store.query('SELECT 1').catch(() => {});
      return new Keyv({ store, namespace, ttl });
    }
    case 'redis': {
      if (!options.redisUrl) {
        throw new Error("The 'redis' store needs a URL (redisUrl), for example redis://127.0.0.1:6379");
      }
      if (!/^rediss?:\/\//.test(options.redisUrl)) {
        throw new Error('The Redis URL must start with redis:// or rediss://');
      }
      const store = new KeyvRedis(options.redisUrl, {
        namespace,
        connectionTimeout: REDIS_CONNECT_TIMEOUT_MS,
      });
      // The adapter prefixes keys itself; a second prefix from Keyv would only make keys longer.
      return new Keyv({ store, namespace, ttl, useKeyPrefix: false });
    }
    default:
      throw new Error(`Unknown store kind '${String(kind)}'; use 'sqlite', 'memory' or 'redis'`);
  }
}

/** The store (data dir, SQLite file, Redis) cannot be used: at start-up, or when an operation fails later. */
export class StoreUnavailableError extends UserFacingError {
  override name = 'StoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown; userMessage?: string }) {
    super('store_unavailable', message, options);
  }
}

const DIR_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'not permitted',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is a file, not a directory',
  ENOENT: 'it cannot be created there',
  ENOSPC: 'the disk is full',
};

/**
 * Creates `dir` one level at a time. Node's recursive mkdir loops forever (at full CPU, deaf to SIGTERM) on paths
 * like /proc/nope where mkdir fails with ENOENT under an existing directory; one level at a time every failure
 * comes back as an error with a reason a person can act on.
 */
export function ensureDirectory(dir: string): void {
  const missing: string[] = [];
  let existing = resolve(dir);
  for (;;) {
    let info: Stats | undefined;
    try {
      info = statSync(existing);
    } catch {
      info = undefined;
    }
    if (info) {
      if (!info.isDirectory()) {
        throw new StoreUnavailableError(
          `Cannot create the data directory ${dir}: ${existing} is a file, not a directory (check BLIP2_DATA_DIR)`,
        );
      }
      break;
    }
    missing.unshift(existing);
    const parent = dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  for (const part of missing) {
    try {
      mkdirSync(part);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST') continue;
      throw new StoreUnavailableError(
        `Cannot create the data directory ${dir}: ${DIR_REASONS[code] ?? (error as Error).message} (check BLIP2_DATA_DIR)`,
        { cause: error },
      );
    }
  }
}

const closed = new WeakSet<Keyv>();

/**
 * Releases the store's connection. Safe to call twice. Errors from a store that never connected are ignored:
 * there is nothing left to release.
 */
export async function closeKeyv(keyv: Keyv): Promise<void> {
  if (closed.has(keyv)) return;
  closed.add(keyv);
  const store: unknown = keyv.store;
  try {
    if (store instanceof KeyvRedis) {
      // A client still trying to reconnect would wait forever for a graceful QUIT.
      const client = store.client as { isReady?: boolean };
      await store.disconnect(client.isReady !== true);
    } else {
      await keyv.disconnect();
    }
  } catch {
    // Closing is best effort: the caller is shutting down and cannot act on it.
  }
}

/**
 * Writes and deletes a probe entry, throwing a clear error when the store cannot be used. Keyv itself only
 * reports store failures as events and misses, so call this at startup to fail fast on a bad data dir or an
 * unreachable Redis.
 */
export async function checkKeyv(keyv: Keyv, options: StoreOptions): Promise<void> {
  let failure: unknown;
  const onError = (error: unknown) => {
    failure ??= error;
  };
  keyv.on('error', onError);
  try {
    const probe = `store-check-${process.pid}-${Date.now()}`;
    const written = await keyv.set(probe, 'ok');
    if (written) {
      const readBack = await keyv.get(probe);
      await keyv.delete(probe);
      if (readBack === 'ok' && failure === undefined) return;
    }
  } catch (error) {
    failure ??= error;
  } finally {
    keyv.off('error', onError);
  }
  const reason =
    failure instanceof Error ? failure.message : failure === undefined ? 'probe failed' : String(failure);
  throw new StoreUnavailableError(`The ${describeStore(options)} cannot be used: ${reason}`, {
    cause: failure,
  });
}

/** Where entries live, for log lines and error messages (a Redis password is masked). */
export function describeStore(options: StoreOptions): string {
  const kind = resolveStoreKind(options);
  if (kind === 'memory') return 'in-memory store';
  if (kind === 'redis') return `Redis store at ${redactUrl(options.redisUrl ?? '')}`;
  if (!options.sqlitePath && !options.dataDir) return 'SQLite store (no data dir set)';
  return `SQLite store at ${sqliteFilePath(options)}`;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<invalid URL>';
  }
}
