/**
 * The load test behind `npm run bench:load` (and the CI test that runs a small one): a real redis-server, worker
 * processes (`blip2-bot worker`) and fronts (`blip2-bot start --role front`, web adapter), and conversations
 * through the web API — 30% new pictures, 70% follow-ups, each follow-up sent to another front than the one
 * before so the shared state in Redis is exercised. Optionally SIGKILLs a worker while it runs a job. Counts what
 * was answered, lost (no answer) and duplicated (a job completed twice, or more turns stored than were asked).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QueueEvents } from 'bullmq';
import sharp from 'sharp';
import { KEY_PREFIX, QUEUE_NAME, redisOptions } from '../src/scale/redis.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'blip2-bot.js');

export interface LoadOptions {
  fronts?: number;
  workers?: number;
  requests?: number;
  killWorker?: boolean;
  /** An existing Redis; default: a redis-server started here on a free loopback port. */
  queueUrl?: string;
  /** Model dir for the workers; default: the demo model. */
  modelDir?: string;
  /** Conversations talking at once. */
  concurrency?: number;
  /** Jobs each worker process runs at once (`WORKER_CONCURRENCY`; default 1): above 1 its decode steps merge. */
  workerConcurrency?: number;
  /** Share of requests that bring a new picture. */
  newShare?: number;
  /** Generation settings of every request (short by default, so a run is about the queue, not the model). */
  generation?: Record<string, unknown>;
  log?: (line: string) => void;
}

export interface LoadReport {
  requests: number;
  answered: number;
  lost: number;
  duplicated: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  throughputPerMinute: number;
  workers: number;
  workerKilled: boolean;
  fronts: number;
  /** Why requests were lost (HTTP status and error code), for the log. */
  lostReasons: string[];
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolvePort(port));
    });
  });
}

/** A redis-server of its own: loopback only, no persistence, in a temp dir. */
export async function startRedis(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await import('ioredis');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = new Redis({ ...redisOptions(url), lazyConnect: true, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      break;
    } catch {
      client.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { url, stop: () => stopChild(child, 5_000).then(() => {}) };
}

export interface BotProcess {
  child: ChildProcess;
  healthUrl: string;
  webUrl?: string;
  output: string[];
}

/** `node bin/blip2-bot.js <args>` in `cwd` with only the variables given (no .env, no tokens of the host). */
export async function spawnBot(
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<BotProcess> {
  const healthPort = await freePort();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      TMPDIR: process.env.TMPDIR ?? tmpdir(),
      ...(process.env.CI ? { CI: process.env.CI } : {}),
      HEALTH_PORT: String(healthPort),
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (d) => output.push(String(d)));
  child.stderr?.on('data', (d) => output.push(String(d)));
  return {
    child,
    healthUrl: `http://127.0.0.1:${healthPort}`,
    ...(env.WEB_PORT ? { webUrl: `http://127.0.0.1:${env.WEB_PORT}` } : {}),
    output,
  };
}

/** Waits for `/readyz` to say 200. */
export async function waitReady(bot: BotProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (bot.child.exitCode !== null) {
      throw new Error(
        `a bot process exited (${bot.child.exitCode}) before it was ready:\n${bot.output.join('')}`,
      );
    }
    try {
      const res = await fetch(`${bot.healthUrl}/readyz`);
      if (res.status === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`a bot process was not ready after ${timeoutMs} ms:\n${bot.output.join('')}`);
}

export async function health(bot: BotProcess): Promise<Record<string, unknown> | undefined> {
  try {
    return (await (await fetch(`${bot.healthUrl}/healthz`)).json()) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed by a signal). */
export function stopChild(child: ChildProcess, graceMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolveExit) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolveExit(code);
    });
    child.kill('SIGTERM');
  });
}

async function picture(seed: number): Promise<string> {
  const background = { r: (seed * 53) % 256, g: (seed * 97) % 256, b: (seed * 151) % 256 };
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background } })
    .png()
    .toBuffer();
  return png.toString('base64');
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function runLoadTest(options: LoadOptions = {}): Promise<LoadReport> {
  const fronts = options.fronts ?? 1;
  const workers = options.workers ?? 2;
  const requests = options.requests ?? 200;
  const log = options.log ?? (() => {});
  const generation = options.generation ?? { numBeams: 1, maxNewTokens: 8 };
  const work = mkdtempSync(join(tmpdir(), 'blip2-load-'));
  const bots: BotProcess[] = [];
  let redis: { url: string; stop(): Promise<void> } | undefined;
  let events: QueueEvents | undefined;
  try {
    if (!options.queueUrl) redis = await startRedis(work);
    const queueUrl = options.queueUrl ?? redis!.url;
    const common = {
      QUEUE_URL: queueUrl,
      SHUTDOWN_GRACE_SECONDS: '5',
      ...(options.modelDir ? { BLIP2_MODEL_DIR: resolve(options.modelDir) } : {}),
    };
    log(`redis ${queueUrl}; starting ${workers} worker(s) and ${fronts} front(s)`);
    const workerBots = await Promise.all(
      Array.from({ length: workers }, () =>
        spawnBot(
          ['worker'],
          options.workerConcurrency
            ? { ...common, WORKER_CONCURRENCY: String(options.workerConcurrency) }
            : common,
          work,
        ),
      ),
    );
    bots.push(...workerBots);
    // Fronts wait for a worker to say which model it serves: start them once one is ready.
    await Promise.all(workerBots.map((b) => waitReady(b)));
    const frontBots = await Promise.all(
      Array.from({ length: fronts }, async () =>
        spawnBot(['start', '--role', 'front'], { ...common, WEB_PORT: String(await freePort()) }, work),
      ),
    );
    bots.push(...frontBots);
    await Promise.all(frontBots.map((b) => waitReady(b)));

    // Every completion the queue reports, by job id: a job that completes twice is a duplicate.
    const completions = new Map<string, number>();
    events = new QueueEvents(QUEUE_NAME, { connection: redisOptions(queueUrl), prefix: KEY_PREFIX });
    events.on('completed', ({ jobId }) => completions.set(jobId, (completions.get(jobId) ?? 0) + 1));
    await events.waitUntilReady();

    const conversations = Math.max(1, Math.round(requests * (options.newShare ?? 0.3)));
    const plan = Array.from({ length: conversations }, (_, i) => ({
      index: i,
      turns: Math.floor(requests / conversations) + (i < requests % conversations ? 1 : 0),
    }));
    const latencies: number[] = [];
    const lostReasons: string[] = [];
    let answered = 0;
    let duplicated = 0;
    let workerKilled = false;
    const killAfter = Math.max(1, Math.floor(requests / 3));
    const killer = async () => {
      // Kill a worker in the middle of a job: wait until it says it runs one.
      while (answered < killAfter && answered + lostReasons.length < requests) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const victim = workerBots[0]!;
      for (let i = 0; i < 400; i++) {
        const h = await health(victim);
        if (h && Number(h.active) > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      victim.child.kill('SIGKILL');
      workerKilled = true;
      log(`SIGKILLed worker ${victim.child.pid} after ${answered} answers`);
    };
    const killing = options.killWorker && workers > 1 ? killer() : Promise.resolve();

    const started = performance.now();
    const post = async (url: string, body: unknown) => {
      const t = performance.now();
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(180_000),
        });
        const json = (await res.json().catch(() => ({}))) as {
          conversation?: string;
          answer?: { text?: unknown };
          error?: { code?: string };
        };
        if (res.status === 200 && typeof json.answer?.text === 'string') {
          latencies.push(performance.now() - t);
          answered++;
          return json;
        }
        lostReasons.push(`${res.status} ${json.error?.code ?? ''}`.trim());
      } catch (error) {
        lostReasons.push((error as Error).name);
      }
      return undefined;
    };
    let next = 0;
    const talker = async () => {
      for (let c = next++; c < plan.length; c = next++) {
        const { index, turns } = plan[c]!;
        const front = (k: number) => frontBots[(index + k) % frontBots.length]!.webUrl!;
        const first = await post(`${front(0)}/api/v1/conversations`, {
          image: await picture(index + 1),
          imageName: `load-${index}.png`,
          question: 'what is in the picture?',
          options: generation,
        });
        const id = first?.conversation as string | undefined;
        let sent = 1;
        for (let k = 1; k < turns; k++) {
          if (!id) {
            lostReasons.push('no conversation');
            continue;
          }
          sent++;
          await post(`${front(k)}/api/v1/conversations/${id}/messages`, {
            question: `and what about detail ${k}?`,
            options: generation,
          });
        }
        if (id) {
          // Turns stored beyond those asked would be answers delivered twice.
          const thread = (await (await fetch(`${front(turns)}/api/v1/conversations/${id}`)).json()) as {
            turns?: unknown[];
          };
          duplicated += Math.max(0, (thread.turns?.length ?? 0) - sent);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 8, plan.length) }, talker));
    const elapsedMs = performance.now() - started;
    await killing;
    duplicated += [...completions.values()].filter((n) => n > 1).length;
    const sorted = [...latencies].sort((a, b) => a - b);
    return {
      requests,
      answered,
      lost: requests - answered,
      duplicated,
      p50Ms: Math.round(percentile(sorted, 50)),
      p95Ms: Math.round(percentile(sorted, 95)),
      maxMs: Math.round(sorted.at(-1) ?? 0),
      throughputPerMinute: Math.round((answered / elapsedMs) * 60_000 * 10) / 10,
      workers,
      workerKilled,
      fronts,
      lostReasons,
    };
  } finally {
    await events?.close().catch(() => {});
    await Promise.all(bots.map((b) => stopChild(b.child, 15_000)));
    await redis?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
