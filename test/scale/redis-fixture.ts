/** A real redis-server per test file (loopback, free port, temp dir), or a reason to skip when it is absent. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { hasRedisServer, startRedis } from '../../bench/load-run.js';
import { OWED_KEY } from '../../src/scale/jobs.js';
import { KEY_PREFIX, QUEUE_NAME } from '../../src/scale/redis.js';

export const HAS_REDIS = hasRedisServer();
export const REDIS_SKIP_REASON =
  'redis-server is not installed (apt-get install redis-server; .ci/run installs it); skipping the scale-out tests';

if (!HAS_REDIS) console.warn(`[tests] ${REDIS_SKIP_REASON}`);

export async function openRedis(): Promise<{ url: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'blip2-redis-'));
  const redis = await startRedis(dir);
  return {
    url: redis.url,
    close: async () => {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Waits (up to 10 s) until `count` answers are owed and their jobs are in the queue — a front killed between the
 * two loses the request (its person is told so) — and returns how many are.
 */
export async function queuedOwed(redis: Redis, count: number): Promise<number> {
  let queued = 0;
  for (let i = 0; i < 500; i++) {
    const ids = await redis.hkeys(OWED_KEY);
    queued = 0;
    for (const id of ids) queued += await redis.exists(`${KEY_PREFIX}:${QUEUE_NAME}:${id}`);
    if (queued >= count) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return queued;
}

/** How many answers are still owed once the sweep has had up to 5 s to clear the delivered ones (0 when done). */
export async function owedAfterSweep(redis: Redis): Promise<number> {
  for (let i = 0; i < 250 && (await redis.hlen(OWED_KEY)) > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return redis.hlen(OWED_KEY);
}
