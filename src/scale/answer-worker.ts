/**
 * A worker process's side of the queue (`blip2-bot worker`): takes answer jobs from BullMQ and runs them on the
 * engine (the model in its own thread, so BullMQ's lock renewals never wait for a vision run). A worker killed
 * mid-job stops renewing its lock; BullMQ's stalled-job check on another worker puts the job back in line.
 */
import { UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { GenerateRequest, GenerateResult, ImageQuestionEngine } from '../engine/api.js';
import { toWire } from '../engine/error-wire.js';
import { ImageError, RequestTimeoutError } from '../engine/errors.js';
import { EngineStoppedError } from '../engine/threaded-engine.js';
import { waitWithGrace } from '../util/grace.js';
import type { Logger } from '../util/logger.js';
import {
  type AnswerJobData,
  type AnswerProgress,
  bytesKey,
  CANCEL_CHANNEL,
  MODEL_KEY,
  type ModelInfo,
} from './jobs.js';
import { KEY_PREFIX, QUEUE_NAME, redisOptions } from './redis.js';

/** A dead worker's job is back in line within about LOCK_MS + STALLED_CHECK_MS. */
export const LOCK_MS = 6_000;
export const STALLED_CHECK_MS = 3_000;

export interface AnswerWorkerOptions {
  queueUrl: string;
  redis: Redis;
  /** `cacheTag`: the preprocessing part of the engine's image keys, so fronts compute the same keys. */
  engine: ImageQuestionEngine & { readonly cacheTag: string };
  logger: Logger;
  /** Jobs this process runs at once (the engine still runs one inference at a time unless it batches). */
  concurrency?: number;
}

export interface RunningWorker {
  /** Jobs running now. */
  readonly active: number;
  readonly ready: boolean;
  /** Stops taking jobs, lets running ones finish for up to `graceMs`, then hands the rest back to the queue. */
  drain(graceMs: number): Promise<'done' | 'timeout'>;
}

export async function startAnswerWorker(options: AnswerWorkerOptions): Promise<RunningWorker> {
  const { engine, logger, redis } = options;
  const model: ModelInfo = { modelId: engine.modelId, demo: engine.demo, cacheTag: engine.cacheTag };
  const previous = await redis.get(MODEL_KEY);
  if (previous && previous !== JSON.stringify(model)) {
    logger.warn(
      `the queue's workers served another model before (${previous}); every worker must serve the same one`,
    );
  }
  await redis.set(MODEL_KEY, JSON.stringify(model));

  const running = new Set<Promise<unknown>>();
  const worker = new Worker<AnswerJobData, GenerateResult>(
    QUEUE_NAME,
    async (job, _token, signal) => {
      const work = answer(job.data, job.id ?? '', signal, (progress) => job.updateProgress(progress));
      running.add(work);
      try {
        return await work;
      } finally {
        running.delete(work);
      }
    },
    {
      connection: redisOptions(options.queueUrl),
      prefix: KEY_PREFIX,
      concurrency: options.concurrency ?? 1,
      lockDuration: LOCK_MS,
      stalledInterval: STALLED_CHECK_MS,
      maxStalledCount: 2,
      autorun: false,
    },
  );
  worker.on('error', (e) => logger.warn(`queue error: ${e.message}`));
  worker.on('stalled', (jobId) => logger.warn(`job ${jobId} stalled (its worker stopped); back in line`));

  async function answer(
    data: AnswerJobData,
    jobId: string,
    signal: AbortSignal | undefined,
    progress: (p: AnswerProgress) => Promise<void>,
  ): Promise<GenerateResult> {
    const log = logger.child('job', { requestId: data.requestId });
    const started = performance.now();
    try {
      const left = data.deadline - Date.now();
      if (left <= 0) throw new RequestTimeoutError(0);
      let image: string | Uint8Array | undefined = data.image?.key;
      if (data.image?.uploaded) {
        const bytes = await redis.getBuffer(bytesKey(data.image.key));
        // Gone after its TTL or taken by an earlier attempt that already encoded it: the key may be cached.
        if (bytes) image = new Uint8Array(bytes);
      }
      const request: GenerateRequest = {
        ...data.request,
        ...(image !== undefined ? { image } : {}),
        requestId: data.requestId,
        timeoutMs: left,
        ...(signal ? { signal } : {}),
        ...(data.wantTokens ? { onToken: (token) => void progress({ token }).catch(() => {}) } : {}),
      };
      const result = await engine.generate(request);
      if (data.image?.uploaded) await redis.del(bytesKey(data.image.key));
      log.info(
        `answered in ${Math.round(performance.now() - started)} ms (attempt for job ${jobId}, picture ${result.imageCached ? 'cached' : 'encoded'})`,
      );
      return result;
    } catch (error) {
      if (error instanceof ImageError && error.code === 'expired' && data.image?.uploaded) {
        log.warn('the picture bytes expired before a worker could encode them');
      }
      // A stopped model thread is this worker's problem: another attempt (maybe elsewhere) may succeed. Anything
      // else (a bad picture, a timeout, a cancel) would fail again: no retry, and the engine's error goes back.
      if (error instanceof EngineStoppedError) throw error;
      // Cut short by this worker's own drain: back in line for another worker.
      if (draining) throw new Error('the worker shut down while answering; another worker takes the job');
      log.info(`failed: ${(error as Error).message}`);
      throw new UnrecoverableError(JSON.stringify(toWire(error)));
    }
  }

  let draining = false;
  // Cancellation from a front: the worker running that job aborts its signal.
  const subscriber = redis.duplicate();
  await subscriber.subscribe(CANCEL_CHANNEL);
  subscriber.on('message', (_channel, jobId: string) => {
    if (worker.cancelJob(jobId, 'cancelled by the person')) logger.info(`job ${jobId}: cancelled`);
  });

  void worker.run().catch((e) => logger.error('the queue worker stopped', e));
  await worker.waitUntilReady();
  return {
    get active() {
      return running.size;
    },
    get ready() {
      return !draining && worker.isRunning();
    },
    async drain(graceMs: number) {
      draining = true;
      // Stop fetching new jobs at once; running ones go on.
      const closed = worker.close();
      const outcome = await waitWithGrace(running, graceMs);
      if (outcome === 'timeout') {
        logger.warn(
          `${running.size} job(s) still running after ${graceMs} ms; handing them back to the queue`,
        );
        worker.cancelAllJobs('the worker is shutting down');
        await worker.close(true);
      } else await closed;
      subscriber.disconnect();
      return outcome;
    },
  };
}
