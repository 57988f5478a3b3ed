/** A real redis-server per test file (loopback, free port, temp dir), or a reason to skip when it is absent. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  type BotProcess,
  hasRedisServer,
  spawnBot,
  startRedis,
  stopChild,
  waitReady,
} from '../../bench/load-run.js';
import { OWED_KEY } from '../../src/scale/jobs.js';
import { KEY_PREFIX, QUEUE_NAME, redisOptions } from '../../src/scale/redis.js';

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

/** A redis-server with bot processes on it (`blip2-bot start --role front`, `blip2-bot worker`), for tests. */
export interface BotCluster {
  url: string;
  /** A client of the tests' own (owed records, conversations). */
  redis: Redis;
  /** The answer queue, e.g. paused while a front dies so its jobs surely have not ended. */
  queue: Queue;
  /** Every process started, in order (their output helps when a test fails). */
  bots: BotProcess[];
  /**
   * Starts `blip2-bot <args>` on this Redis (`QUEUE_URL`, a 5 s shutdown grace, then `env`) and waits until it is
   * ready, unless `ready: false`.
   */
  spawn(args: string[], env?: Record<string, string>, options?: { ready?: boolean }): Promise<BotProcess>;
  /** Stops the processes, then Redis, and removes the working directory. */
  close(): Promise<void>;
}

export async function openBotCluster(): Promise<BotCluster> {
  const server = await openRedis();
  const redis = new Redis(redisOptions(server.url));
  const queue = new Queue(QUEUE_NAME, { connection: redisOptions(server.url), prefix: KEY_PREFIX });
  const work = mkdtempSync(join(tmpdir(), 'blip2-bots-'));
  const bots: BotProcess[] = [];
  return {
    url: server.url,
    redis,
    queue,
    bots,
    async spawn(args, env = {}, options = {}) {
      const bot = await spawnBot(args, { QUEUE_URL: server.url, SHUTDOWN_GRACE_SECONDS: '5', ...env }, work);
      bots.push(bot);
      if (options.ready ?? true) await waitReady(bot);
      return bot;
    },
    async close() {
      await Promise.all(bots.map((b) => stopChild(b.child, 10_000)));
      await queue.close();
      redis.disconnect();
      await server.close();
      rmSync(work, { recursive: true, force: true });
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

/**
 * Waits (up to 10 s) until `count` owed records carry the queue notice their front posted; returns how many do.
 * A front kill after this shows whether the adopting front edits those notices into the answers.
 */
export async function owedWithNotice(redis: Redis, count: number): Promise<number> {
  let noticed = 0;
  for (let i = 0; i < 500; i++) {
    const records = Object.values(await redis.hgetall(OWED_KEY));
    noticed = records.filter((raw) => typeof JSON.parse(raw).delivery?.notice?.id === 'string').length;
    if (noticed >= count) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return noticed;
}

/** How many answers are still owed once the sweep has had up to 5 s to clear the delivered ones (0 when done). */
export async function owedAfterSweep(redis: Redis): Promise<number> {
  for (let i = 0; i < 250 && (await redis.hlen(OWED_KEY)) > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return redis.hlen(OWED_KEY);
}
