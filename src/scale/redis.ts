/**
 * The Redis behind the scale-out (`QUEUE_URL`): connection settings for BullMQ and our own client (uploaded
 * picture bytes, reply guards, cancellation, the workers' model), and the one start-up check that turns an
 * unreachable Redis into one clear line.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { UserFacingError } from '../errors.js';

/** Everything the queue's Redis keys start with (BullMQ's own keys and ours). */
export const KEY_PREFIX = 'blip2';
/** The BullMQ queue every front adds to and every worker takes from. */
export const QUEUE_NAME = 'answers';

export class QueueUnavailableError extends UserFacingError {
  override name = 'QueueUnavailableError';
  constructor(where: string, options?: { cause?: unknown }) {
    super('queue_unavailable', `the queue's Redis at ${where} is unreachable`, {
      ...options,
      userMessage: `Cannot reach the queue's Redis at ${where} (QUEUE_URL). Start redis-server there or fix QUEUE_URL.`,
    });
  }
}

/** `redis://[user:pass@]host:port[/db]` (or `rediss://` for TLS) as ioredis options. */
export function redisOptions(url: string): RedisOptions {
  const parsed = new URL(url);
  const db = parsed.pathname.replace(/^\//, '');
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    // BullMQ's blocking connections require it; our own commands retry on reconnect the same way.
    maxRetriesPerRequest: null,
  };
}

/** Where a URL points, without its password (for messages). */
export function describeRedis(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || 6379}`;
}

/** A connected client; rejects with `QueueUnavailableError` within `timeoutMs` instead of retrying forever. */
export async function connectRedis(url: string, timeoutMs = 5_000): Promise<Redis> {
  const client = new Redis({ ...redisOptions(url), lazyConnect: true, connectTimeout: timeoutMs });
  // Until the first connection, an error means "not there": fail once, clearly.
  const swallow = () => {};
  client.on('error', swallow);
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref()),
    ]);
  } catch (error) {
    client.disconnect();
    throw new QueueUnavailableError(describeRedis(url), { cause: error });
  }
  return client;
}
