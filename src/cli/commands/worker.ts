/**
 * `blip2-bot worker`: a scaled-out inference process. It loads the model (in a worker thread), takes answer jobs
 * from the BullMQ queue in QUEUE_URL and shares the image cache in Redis with every other worker. SIGTERM/SIGINT
 * drain it: no new jobs, running ones finish within SHUTDOWN_GRACE_SECONDS, the rest go back in line.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { CONFIG_VARIABLES, loadConfig } from '../../config/config.js';
import { ensureDemoModel } from '../../demo/demo-model.js';
import { ThreadedEngine } from '../../engine/threaded-engine.js';
import { UserFacingError } from '../../errors.js';
import { MANIFEST_FILE } from '../../model/graph-io.js';
import { type RunningWorker, startAnswerWorker } from '../../scale/answer-worker.js';
import { type HealthServer, startHealthEndpoints } from '../../scale/health.js';
import { connectRedis, describeRedis, QueueUnavailableError } from '../../scale/redis.js';
import { createLogger } from '../../util/logger.js';
import { stopRequested } from '../stop-requested.js';
import type { StartDeps } from './start.js';

const WORKER_VARIABLES = [
  'QUEUE_URL',
  'REDIS_URL',
  'BLIP2_MODEL_DIR',
  'WORKER_CONCURRENCY',
  'CACHE_TTL_SECONDS',
  'MAX_IMAGE_MB',
  'HEALTH_PORT',
  'HEALTH_HOST',
  'SHUTDOWN_GRACE_SECONDS',
  'LOG_LEVEL',
  'LOG_FORMAT',
];

export const WORKER_USAGE = `Usage: blip2-bot worker

Loads the model and answers the jobs that \`blip2-bot start --role front\` processes put in the BullMQ queue at
QUEUE_URL. Run as many as you have machines (or cores to spare); all must serve the same model. A worker that
dies mid-job (killed, out of memory) loses nothing: another worker takes the job up within about 10 s. Settings
come from the environment and from .env in the current directory (docs/deployment.md).

Variables:
${WORKER_VARIABLES.map((name) => `  ${name.padEnd(24)}${CONFIG_VARIABLES[name] ?? ''}`).join('\n')}`;

export async function workerCommand(argv: string[], deps: StartDeps = {}): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') {
      stdout.write(`${WORKER_USAGE}\n`);
      return 0;
    }
    stderr.write(`blip2-bot worker: unknown option ${arg}\n\n${WORKER_USAGE}\n`);
    return 2;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ ...(deps.env ? { env: deps.env } : {}), ...(deps.cwd ? { cwd: deps.cwd } : {}) });
  } catch (err) {
    if (err instanceof UserFacingError) {
      stderr.write(`blip2-bot worker: ${err.userMessage}\n`);
      return 2;
    }
    throw err;
  }
  if (!config.queue) {
    stderr.write('blip2-bot worker: set QUEUE_URL (redis://host:port), the queue the fronts put jobs in.\n');
    return 2;
  }
  const queue = config.queue;
  const logger = createLogger({
    level: config.logLevel,
    secrets: config.secrets,
    format: config.logFormat,
  }).child('worker', { pid: process.pid });
  const stop = stopRequested(deps.signal);

  let redis: Redis | undefined;
  let engine: ThreadedEngine | undefined;
  let worker: RunningWorker | undefined;
  let health: HealthServer | undefined;
  let stopping = false;
  let exitCode = 0;
  try {
    health = await startHealthEndpoints(config.health, logger, () => ({
      ready: Boolean(worker?.ready) && !stopping,
      details: {
        role: 'worker',
        ...(engine ? { model: engine.modelId } : { loading: true }),
        active: worker?.active ?? 0,
        ...(stopping ? { draining: true } : {}),
      },
    }));
    redis = await connectRedis(queue.url);
    let modelDir = config.modelDir;
    if (!existsSync(join(modelDir, MANIFEST_FILE))) {
      logger.warn(`no converted model in ${modelDir}: serving the DEMO model (random answers)`);
      modelDir = await ensureDemoModel();
    }
    const started = performance.now();
    engine = await ThreadedEngine.load(modelDir, {
      store: config.store,
      ...(config.store.ttlMs ? { cacheTtlMs: config.store.ttlMs } : {}),
      queueCapacity: config.queueCapacity,
      requestTimeoutMs: config.chat.requestTimeoutMs,
      preprocess: { maxBytes: config.chat.maxImageBytes },
      logger: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) },
    });
    worker = await startAnswerWorker({
      queueUrl: queue.url,
      redis,
      engine,
      logger,
      concurrency: queue.workerConcurrency,
    });
    logger.info(
      `model ${engine.modelId} ready in ${((performance.now() - started) / 1000).toFixed(1)} s; taking jobs from ${describeRedis(queue.url)}`,
    );
    const reason = await stop.promise;
    stopping = true;
    logger.info(`stopping (${reason}): finishing running jobs for up to ${config.shutdownGraceMs / 1000} s`);
  } catch (err) {
    if (err instanceof UserFacingError) {
      logger.debug('the worker could not start', err);
      stderr.write(`blip2-bot worker: ${err.userMessage}\n`);
      exitCode = err instanceof QueueUnavailableError ? 2 : 1;
    } else {
      logger.error('the worker could not start', err);
      stderr.write(`blip2-bot worker: ${(err as Error).message}\n`);
      exitCode = 1;
    }
  } finally {
    stopping = true;
    await worker?.drain(config.shutdownGraceMs);
    await engine?.close().catch((err) => logger.warn('closing the engine failed', err));
    redis?.disconnect();
    await health?.close();
    stop.cleanup();
  }
  return exitCode;
}
