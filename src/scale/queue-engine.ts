/**
 * `QueueEngine`: the engine of a front (`blip2-bot start --role front`). It loads no model: each `generate` is
 * one BullMQ job that some worker process (`blip2-bot worker`) runs. The place in line comes from the job's
 * position in the queue's wait list, streamed tokens from job progress events, errors as the same classes the
 * engine raised (error-wire.ts), and an aborted request is removed from the line or cancelled on its worker.
 *
 * A front can die without a word (SIGKILL, out of memory, its machine): its workers still finish its jobs. So each
 * front keeps a heartbeat in Redis and records every answer it owes (`OWED_KEY`, with the chat core's delivery
 * ticket); every front sweeps those records and adopts the ones whose front's heartbeat is gone, once their job
 * has ended, claiming each with the same reply guard as the normal path so exactly one process delivers it.
 */
import { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type Keyv from 'keyv';
import type {
  DeliveryTicket,
  EncodeImageResult,
  GenerateRequest,
  GenerateResult,
  ImageQuestionEngine,
  OrphanedRequest,
  OrphanHandler,
} from '../engine/api.js';
import { fromWire, type WireError } from '../engine/error-wire.js';
import { AnsweredElsewhereError, RequestAbortedError } from '../engine/errors.js';
import { ImageCache } from '../engine/image-cache.js';
import type { Logger } from '../util/logger.js';
import {
  type AnswerJobData,
  type AnswerProgress,
  BYTES_TTL_MS,
  bytesKey,
  CANCEL_CHANNEL,
  DONE_TTL_MS,
  frontKey,
  jobIdFor,
  MODEL_KEY,
  type ModelInfo,
  OWED_KEY,
  type OwedRecord,
  repliedKey,
} from './jobs.js';
import { KEY_PREFIX, QUEUE_NAME, redisOptions } from './redis.js';

/** How often a waiting job's place in line (and, as a safety net for missed events, its state) is read. */
const POLL_MS = 500;
/** Replaces an owed record only while it exists: an amendment must not bring back a request that has ended. */
const REPLACE_IF_OWED = `if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0`;
// The wait list, or the paused one while the queue is paused (BullMQ reports both as 'waiting').
const POSITION = `for _, key in ipairs(KEYS) do
  local i = redis.call('LPOS', key, ARGV[1])
  if i then return redis.call('LLEN', key) - i end
end
return 0`;

/**
 * How long a front's heartbeat lives without a refresh: a killed front's answers are adopted by another front
 * this long (plus one sweep, a third of it) after it died. Refreshed, and swept, every third of it.
 */
export const FRONT_HEARTBEAT_TTL_MS = 15_000;

/** An owed answer no front could deliver for this long is dropped: its job is gone by then (DONE_TTL_MS). */
const ABANDON_AFTER_MS = 2 * DONE_TTL_MS;

/** Attempts per job: a worker that dies mid-job (SIGKILL, out of memory) costs one; the next worker retries. */
export const JOB_ATTEMPTS = 3;

export interface QueueEngineOptions {
  queueUrl: string;
  /** Our own client on the same Redis (bytes, reply guards, cancellation). */
  redis: Redis;
  /** The shared image cache's store (namespace `images`), to send bytes only for pictures no worker has. */
  images: Keyv;
  logger: Logger;
  /** Stops waiting for the first worker to say which model it serves. */
  signal?: AbortSignal;
  /** Heartbeat lifetime (default `FRONT_HEARTBEAT_TTL_MS`); refreshes and sweeps run every third of it. */
  heartbeatTtlMs?: number;
}

interface Waiting {
  resolve(result: GenerateResult): void;
  reject(error: unknown): void;
  onToken?: GenerateRequest['onToken'];
}

/** A failed job's reason: the engine's error as JSON when it was one, else plain text. */
export function errorFromReason(reason: string | undefined): Error {
  try {
    const wire = JSON.parse(reason ?? '') as WireError;
    if (wire && typeof wire.name === 'string' && typeof wire.fields === 'object') return fromWire(wire);
  } catch {}
  return new Error(reason || 'the job failed');
}

export class QueueEngine implements ImageQuestionEngine {
  readonly #waiting = new Map<string, Waiting>();
  /** This front's owed records by job id, as written to Redis (amended with the queue notice once posted). */
  readonly #owed = new Map<string, OwedRecord>();
  #queueLength = 0;
  #counter: NodeJS.Timeout | undefined;
  readonly #heartbeat: NodeJS.Timeout;
  #heartbeatFailing = false;
  #orphans: OrphanHandler | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #closed = false;

  private constructor(
    private readonly queue: Queue<AnswerJobData, GenerateResult>,
    private readonly events: QueueEvents,
    private readonly cache: ImageCache,
    private readonly options: QueueEngineOptions,
    private readonly model: ModelInfo,
    /** This process's name among the fronts (random per start: a restarted front is a new one). */
    readonly frontId: string,
  ) {
    const log = options.logger;
    events.on('completed', ({ jobId, returnvalue }) => {
      const value = typeof returnvalue === 'string' ? safeJson(returnvalue) : returnvalue;
      if (value)
        this.#deliver(jobId, value as unknown as GenerateResult).catch((e) =>
          log.warn(`job ${jobId}: could not hand the answer on: ${(e as Error).message}`),
        );
    });
    events.on('failed', ({ jobId, failedReason }) =>
      this.#failed(jobId, failedReason).catch((e) =>
        log.warn(`job ${jobId}: could not hand the failure on: ${(e as Error).message}`),
      ),
    );
    events.on('progress', ({ jobId, data }) => {
      const progress = data as AnswerProgress;
      if (progress && typeof progress === 'object' && 'token' in progress) {
        this.#waiting.get(jobId)?.onToken?.(progress.token);
      }
    });
    this.#counter = setInterval(() => {
      void queue.getWaitingCount().then(
        (n) => {
          this.#queueLength = n;
        },
        () => {},
      );
    }, 2_000);
    this.#counter.unref();
    this.#heartbeat = setInterval(() => void this.#beat(), this.#ttl / 3);
    this.#heartbeat.unref();
  }

  get #ttl(): number {
    return this.options.heartbeatTtlMs ?? FRONT_HEARTBEAT_TTL_MS;
  }

  /** Says "this front is alive" for another heartbeat lifetime. */
  async #beat(): Promise<void> {
    try {
      await this.options.redis.set(frontKey(this.frontId), String(process.pid), 'PX', this.#ttl);
      if (this.#heartbeatFailing) this.options.logger.info('heartbeat written again');
      this.#heartbeatFailing = false;
    } catch (error) {
      if (!this.#heartbeatFailing) {
        this.options.logger.warn(
          `could not write this front's heartbeat (${(error as Error).message}); other fronts will take over its answers`,
        );
      }
      this.#heartbeatFailing = true;
    }
  }

  /** Connects to the queue and waits until a worker has said which model it serves. */
  static async connect(options: QueueEngineOptions): Promise<QueueEngine> {
    const connection = redisOptions(options.queueUrl);
    let model = await readModel(options.redis);
    if (!model) {
      options.logger.info('waiting for a worker (blip2-bot worker) to say which model it serves');
      while (!model) {
        options.signal?.throwIfAborted();
        await new Promise((r) => setTimeout(r, 500));
        model = await readModel(options.redis);
      }
    }
    const queue = new Queue<AnswerJobData, GenerateResult>(QUEUE_NAME, { connection, prefix: KEY_PREFIX });
    const events = new QueueEvents(QUEUE_NAME, { connection, prefix: KEY_PREFIX });
    queue.on('error', (e) => options.logger.warn(`queue error: ${e.message}`));
    events.on('error', (e) => options.logger.warn(`queue events error: ${e.message}`));
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    const frontId = crypto.randomUUID();
    // Alive before the first job is added, so no other front mistakes this one's answers for orphans.
    await options.redis.set(
      frontKey(frontId),
      String(process.pid),
      'PX',
      options.heartbeatTtlMs ?? FRONT_HEARTBEAT_TTL_MS,
    );
    options.logger.info(`queue ready; workers serve ${model.modelId}${model.demo ? ' (demo model)' : ''}`);
    return new QueueEngine(queue, events, new ImageCache(options.images), options, model, frontId);
  }

  /**
   * Starts adopting dead fronts' answers: a sweep now and every third of the heartbeat lifetime. The handler (the
   * chat core) is asked whether it can deliver each ticket before it is claimed.
   */
  onOrphan(handler: OrphanHandler): void {
    this.#orphans = handler;
    if (this.#sweeper) return;
    void this.sweep();
    this.#sweeper = setInterval(() => void this.sweep(), this.#ttl / 3);
    this.#sweeper.unref();
  }

  /**
   * One look at the owed answers: those of fronts without a heartbeat whose job has ended are claimed (the reply
   * guard, so one front delivers each, however many sweep) and handed to the orphan handler; those still waiting
   * or running are left for a later sweep.
   */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweepOnce().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweepOnce(): Promise<void> {
    const handler = this.#orphans;
    if (!handler || this.#closed) return;
    const redis = this.options.redis;
    try {
      const owed = await redis.hgetall(OWED_KEY);
      const alive = new Map<string, boolean>();
      for (const [jobId, raw] of Object.entries(owed)) {
        if (this.#closed) return;
        const record = safeJson(raw) as OwedRecord | undefined;
        if (!record || typeof record.front !== 'string' || typeof record.delivery !== 'object') {
          await redis.hdel(OWED_KEY, jobId);
          continue;
        }
        if (record.front === this.frontId) continue;
        let live = alive.get(record.front);
        if (live === undefined) {
          live = (await redis.exists(frontKey(record.front))) === 1;
          alive.set(record.front, live);
        }
        if (live) continue;
        // Long past its job's lifetime and nobody could deliver it (no front runs its platform): forgotten.
        if (Date.now() - (Number(record.at) || 0) > ABANDON_AFTER_MS) {
          this.options.logger.warn(
            `job ${jobId}: dropping an answer owed by dead front ${record.front} that no front could deliver`,
          );
          await redis.hdel(OWED_KEY, jobId);
          continue;
        }
        if (!handler.accepts(record.delivery)) continue;
        await this.#adopt(jobId, record, handler);
      }
    } catch (error) {
      this.options.logger.warn(`could not look for dead fronts' answers: ${(error as Error).message}`);
    }
  }

  async #adopt(jobId: string, record: OwedRecord, handler: OrphanHandler): Promise<void> {
    const log = this.options.logger.child('orphan', { requestId: record.requestId });
    const job = await Job.fromId<AnswerJobData, GenerateResult>(this.queue, jobId);
    const state = job ? await job.getState() : 'unknown';
    const orphan: OrphanedRequest = { requestId: record.requestId, delivery: record.delivery };
    if (state === 'completed' && job?.returnvalue) orphan.result = job.returnvalue;
    else if (state === 'failed') orphan.error = errorFromReason(job?.failedReason);
    // Waiting or running: a worker is still on it.
    else if (state !== 'unknown') return;
    if (await this.#claim(jobId)) {
      log.info(
        `job ${jobId}: its front ${record.front} is gone; delivering its ${orphan.result ? 'answer' : orphan.error ? 'failure' : 'loss'} from this front`,
      );
      try {
        await handler.deliver(orphan);
      } catch (error) {
        log.error(`job ${jobId}: could not deliver a dead front's answer`, error);
      }
    } else log.info(`job ${jobId}: already handed on by another front`);
    await this.options.redis.hdel(OWED_KEY, jobId);
  }

  /** The reply guard: true for the one process that hands this job's outcome on. */
  async #claim(jobId: string): Promise<boolean> {
    return (await this.options.redis.set(repliedKey(jobId), '1', 'PX', DONE_TTL_MS, 'NX')) === 'OK';
  }

  get demo(): boolean {
    return this.model.demo;
  }
  get modelId(): string {
    return this.model.modelId;
  }
  /** Jobs waiting for a worker (refreshed every 2 s). */
  get queueLength(): number {
    return this.#queueLength;
  }

  imageKey(bytes: Uint8Array): string {
    return ImageCache.imageKey(bytes, this.model.modelId, this.model.cacheTag);
  }

  async encodeImage(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<string> {
    return (await this.encodeImageDetailed(bytes, options)).key;
  }

  /** A caption job that keeps only the encoding (the library API's `encodeImage` on a front). */
  async encodeImageDetailed(
    bytes: Uint8Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<EncodeImageResult> {
    const result = await this.generate({
      image: bytes,
      options: { numBeams: 1, maxNewTokens: 1 },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const t = result.timings;
    return {
      key: result.imageKey ?? this.imageKey(bytes),
      cached: result.imageCached,
      timings: { preprocessMs: t.preprocessMs, visionMs: t.visionMs, qformerMs: t.qformerMs },
    };
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const { image, signal, onToken, onQueuePosition, requestId, delivery, ...rest } = request;
    signal?.throwIfAborted();
    if (image !== undefined && typeof image !== 'string' && !(image instanceof Uint8Array)) {
      throw new Error('a front sends pictures as bytes or image keys, not pixel values');
    }
    const jobId = jobIdFor(requestId ?? `req-${crypto.randomUUID()}`);
    let picture: AnswerJobData['image'];
    if (image instanceof Uint8Array) {
      const key = this.imageKey(image);
      // Bytes cross once: only when no worker has encoded this picture yet.
      const cached = await this.cache.has(key);
      if (!cached) await this.options.redis.set(bytesKey(key), Buffer.from(image), 'PX', BYTES_TTL_MS);
      picture = { key, uploaded: !cached };
    } else if (typeof image === 'string') picture = { key: image, uploaded: false };

    const timeoutMs = request.timeoutMs ?? 120_000;
    const data: AnswerJobData = {
      requestId: requestId ?? jobId,
      request: rest,
      front: this.frontId,
      ...(picture ? { image: picture } : {}),
      wantTokens: Boolean(onToken),
      deadline: Date.now() + (timeoutMs > 0 ? timeoutMs : DONE_TTL_MS),
    };
    const answered = new Promise<GenerateResult>((resolve, reject) => {
      this.#waiting.set(jobId, { resolve, reject, ...(onToken ? { onToken } : {}) });
    });
    if (delivery) {
      // Owed before the job exists: should this front die at any point from here, another one tells the person.
      const owed: OwedRecord = { front: this.frontId, requestId: data.requestId, delivery, at: Date.now() };
      await this.options.redis.hset(OWED_KEY, jobId, JSON.stringify(owed));
      this.#owed.set(jobId, owed);
    }
    // The same id is one job (BullMQ ignores a second add), so a redelivered message is answered once.
    try {
      await this.queue.add('answer', data, {
        jobId,
        attempts: JOB_ATTEMPTS,
        backoff: { type: 'fixed', delay: 500 },
        removeOnComplete: { age: DONE_TTL_MS / 1000 },
        removeOnFail: { age: DONE_TTL_MS / 1000 },
      });
    } catch (error) {
      // The person is told it failed; nothing is owed, or a later sweep would tell them again that it was lost.
      this.#waiting.delete(jobId);
      if (delivery) {
        this.#owed.delete(jobId);
        await this.options.redis.hdel(OWED_KEY, jobId).catch(() => {});
      }
      throw error;
    }

    let lastPosition = 0;
    let stopped = false;
    const poll = async () => {
      while (!stopped) {
        try {
          await this.#check(jobId, (position) => {
            if (position !== lastPosition) {
              lastPosition = position;
              onQueuePosition?.(position);
            }
          });
        } catch {}
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    };
    void poll();
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = () => {
        reject(new RequestAbortedError({ cause: signal?.reason }));
        void this.#cancel(jobId);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      void answered.finally(() => signal?.removeEventListener('abort', onAbort)).catch(() => {});
    });
    try {
      return await Promise.race([answered, aborted]);
    } finally {
      stopped = true;
      this.#waiting.delete(jobId);
      // Handed on (or given up on, which the person is told): nobody else owes it now.
      if (delivery) {
        this.#owed.delete(jobId);
        await this.options.redis
          .hdel(OWED_KEY, jobId)
          .catch((e) => this.options.logger.warn(`job ${jobId}: could not clear its owed record: ${e}`));
      }
    }
  }

  async amendDelivery(requestId: string, delivery: DeliveryTicket): Promise<void> {
    const jobId = jobIdFor(requestId);
    const owed = this.#owed.get(jobId);
    if (!owed) return;
    owed.delivery = delivery;
    await this.options.redis.eval(REPLACE_IF_OWED, 1, OWED_KEY, jobId, JSON.stringify(owed));
  }

  /** Place in line while waiting; the outcome, should its event have been missed. */
  async #check(jobId: string, onPosition: (position: number) => void): Promise<void> {
    const state = await this.queue.getJobState(jobId);
    if (state === 'waiting' || state === 'prioritized') {
      // Jobs are pushed at the head and taken from the tail: the tail is next. One script, so a job taken
      // between two reads cannot skew the count.
      const { wait, paused } = this.queue.keys;
      const position = Number(await this.options.redis.eval(POSITION, 2, wait!, paused!, jobId));
      if (position > 0) onPosition(position);
    } else if (state === 'completed') {
      const job = await Job.fromId<AnswerJobData, GenerateResult>(this.queue, jobId);
      if (job?.returnvalue) await this.#deliver(jobId, job.returnvalue);
    } else if (state === 'failed') {
      const job = await Job.fromId(this.queue, jobId);
      await this.#failed(jobId, job?.failedReason);
    }
  }

  /** Hands the answer on once per job, even with several fronts watching (the reply guard in Redis). */
  async #deliver(jobId: string, result: GenerateResult): Promise<void> {
    const waiting = this.#waiting.get(jobId);
    if (!waiting) return;
    await this.#settle(jobId, waiting, 'answer', () => waiting.resolve(result));
  }

  async #failed(jobId: string, reason: string | undefined): Promise<void> {
    const waiting = this.#waiting.get(jobId);
    if (!waiting) return;
    // A failed attempt that will be retried is not the end.
    if ((await this.queue.getJobState(jobId)) !== 'failed') return;
    await this.#settle(jobId, waiting, 'failure', () => waiting.reject(errorFromReason(reason)));
  }

  /**
   * Ends a waiting request with its job's outcome, in the one process that claims the reply guard; elsewhere the
   * request ends with `AnsweredElsewhereError` (another front took this one for dead and told the person).
   */
  async #settle(jobId: string, waiting: Waiting, what: string, hand: () => void): Promise<void> {
    this.#waiting.delete(jobId);
    let first: boolean;
    try {
      first = await this.#claim(jobId);
    } catch (error) {
      waiting.reject(error);
      return;
    }
    if (first) hand();
    else {
      this.options.logger.info(`job ${jobId}: ${what} already delivered, not sending it twice`);
      waiting.reject(new AnsweredElsewhereError(`job ${jobId}: handed on by another process`));
    }
  }

  async #cancel(jobId: string): Promise<void> {
    try {
      const job = await Job.fromId(this.queue, jobId);
      const state = await job?.getState();
      if (job && (state === 'waiting' || state === 'delayed' || state === 'prioritized')) {
        await job.remove().catch(() => this.options.redis.publish(CANCEL_CHANNEL, jobId));
      } else if (state === 'active') await this.options.redis.publish(CANCEL_CHANNEL, jobId);
    } catch (error) {
      this.options.logger.warn(`job ${jobId}: could not cancel it: ${(error as Error).message}`);
    }
  }

  /** A clean stop: the heartbeat goes at once (this front's answers were handed on or given up by now). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#counter);
    clearInterval(this.#heartbeat);
    clearInterval(this.#sweeper);
    await this.#sweeping;
    await this.options.redis.del(frontKey(this.frontId)).catch(() => {});
    await this.events.close();
    await this.queue.close();
  }
}

async function readModel(redis: Redis): Promise<ModelInfo | undefined> {
  const raw = await redis.get(MODEL_KEY);
  return raw ? (safeJson(raw) as ModelInfo | undefined) : undefined;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
