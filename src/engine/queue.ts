/**
 * Runs inference jobs one at a time by default: onnxruntime already spreads one run over every core, so two runs
 * at once would only make both slower. With `concurrency` > 1 several jobs are in flight at once; the engine uses
 * that when its model serialises every session run itself and merges the decode steps of the jobs in flight into
 * one decoder batch (decode-batch.ts). Waiting is bounded, so a burst of requests gets a quick "busy" answer
 * instead of a reply minutes later.
 *
 * A job gets an AbortSignal and must honour it: the caller's promise settles at once on abort or timeout, but the
 * next job starts only when the aborted one has really stopped (its promise settled), so one run never overlaps
 * another.
 */

import { UserFacingError } from '../errors.js';
import { QueueFullError, RequestAbortedError, RequestTimeoutError } from './errors.js';

export class QueueClosedError extends UserFacingError {
  override name = 'QueueClosedError';
  constructor() {
    super('shutting_down', 'the inference queue is closed (shutting down)', {
      userMessage: 'The bot is shutting down. Please try again in a moment.',
    });
  }
}

/** Requests allowed to wait behind the running one, unless configured (QUEUE_CAPACITY); defined here only. */
export const DEFAULT_QUEUE_CAPACITY = 20;

export interface InferenceQueueOptions {
  /** How many requests may wait behind the running ones; more are refused with QueueFullError. */
  capacity: number;
  /** How many jobs may run at once (default 1). */
  concurrency?: number;
  /** Limit for waiting + running when a request gives none; 0 or undefined = no limit. */
  defaultTimeoutMs?: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Limit for waiting + running; overrides the queue's default; 0 or Infinity = no limit. */
  timeoutMs?: number;
  /** Called with the request's place in line (1 = next) when it starts waiting and whenever that changes. */
  onPosition?: (position: number) => void;
}

export type Job<T> = (signal: AbortSignal) => Promise<T>;

interface Entry {
  readonly job: Job<unknown>;
  readonly controller: AbortController;
  readonly onPosition: ((position: number) => void) | undefined;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** The caller's promise has settled (result, error, abort, timeout or close). */
  settled: boolean;
  lastPosition: number;
  release(): void;
}

export class InferenceQueue {
  readonly capacity: number;
  readonly defaultTimeoutMs: number | undefined;
  readonly concurrency: number;
  readonly #waiting: Entry[] = [];
  readonly #running = new Set<Entry>();
  /** Each settles when its running job's function has returned or thrown. */
  readonly #runningDone = new Set<Promise<void>>();
  #closed = false;
  #idle: Array<() => void> = [];

  constructor(options: InferenceQueueOptions) {
    if (!Number.isInteger(options.capacity) || options.capacity < 0) {
      throw new RangeError(`queue capacity must be a whole number >= 0, got ${options.capacity}`);
    }
    if (options.defaultTimeoutMs !== undefined) checkTimeout(options.defaultTimeoutMs);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`queue concurrency must be a whole number >= 1, got ${options.concurrency}`);
    }
    this.concurrency = concurrency;
    this.capacity = options.capacity;
    this.defaultTimeoutMs = options.defaultTimeoutMs;
  }

  /** Requests waiting, not counting the running ones. */
  get length(): number {
    return this.#waiting.length;
  }

  /** True while a job's function is executing (also after its caller gave up, until the job stops). */
  get running(): boolean {
    return this.#running.size > 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  run<T>(job: Job<T>, options: RunOptions = {}): Promise<T> {
    if (this.#closed) return Promise.reject(new QueueClosedError());
    const { signal, onPosition } = options;
    if (signal?.aborted) return Promise.reject(new RequestAbortedError({ cause: signal.reason }));
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (timeoutMs !== undefined) checkTimeout(timeoutMs);
    const mustWait = this.#running.size >= this.concurrency || this.#waiting.length > 0;
    if (mustWait && this.#waiting.length >= this.capacity) {
      return Promise.reject(new QueueFullError(this.capacity));
    }

    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.#fail(entry, new RequestAbortedError({ cause: signal?.reason }));
      const entry: Entry = {
        job: job as Job<unknown>,
        controller: new AbortController(),
        onPosition,
        resolve: resolve as (value: unknown) => void,
        reject,
        settled: false,
        lastPosition: 0,
        release() {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      if (timeoutMs && Number.isFinite(timeoutMs)) {
        const delay = Math.min(timeoutMs, MAX_TIMER_MS);
        timer = setTimeout(() => this.#fail(entry, new RequestTimeoutError(timeoutMs)), delay);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(entry);
      this.#pump();
      this.#reportPositions();
    });
  }

  /** Resolves once nothing waits and nothing runs. New requests are still accepted meanwhile. */
  drain(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Graceful shutdown: refuses new requests, rejects the waiting ones with QueueClosedError and resolves when
   * the running jobs have stopped. With `abortRunning`, the running jobs' signals are aborted as well (their
   * callers get QueueClosedError). Calling it again waits for the same jobs.
   */
  async close(options: { abortRunning?: boolean } = {}): Promise<void> {
    this.#closed = true;
    for (const entry of this.#waiting.splice(0)) this.#settle(entry, { error: new QueueClosedError() });
    if (options.abortRunning) {
      for (const entry of [...this.#running]) this.#fail(entry, new QueueClosedError());
    }
    if (this.#running.size === 0) this.#pump();
    await Promise.all([...this.#runningDone]);
  }

  #isIdle(): boolean {
    return this.#running.size === 0 && this.#waiting.length === 0;
  }

  /** Starts waiting jobs while fewer than `concurrency` run. */
  #pump(): void {
    while (this.#running.size < this.concurrency) {
      const entry = this.#waiting.shift();
      if (!entry) break;
      this.#start(entry);
    }
    if (this.#isIdle()) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #start(entry: Entry): void {
    this.#running.add(entry);
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(entry.job(entry.controller.signal));
    } catch (error) {
      result = Promise.reject(error);
    }
    // Free the slot before the caller hears back, so a caller that goes straight on to its next request finds
    // the queue as it really is (not still busy with the job it just got the answer to).
    const finish = (outcome: { value: unknown } | { error: unknown }) => {
      this.#running.delete(entry);
      this.#runningDone.delete(done);
      this.#pump();
      this.#reportPositions();
      this.#settle(entry, outcome);
    };
    const done: Promise<void> = result.then(
      (value) => finish({ value }),
      (error: unknown) => finish({ error }),
    );
    this.#runningDone.add(done);
  }

  /** Ends a request early (abort, timeout, close): drops it from the line or aborts its running job. */
  #fail(entry: Entry, error: Error): void {
    if (entry.settled) return;
    const index = this.#waiting.indexOf(entry);
    if (index >= 0) this.#waiting.splice(index, 1);
    else if (this.#running.has(entry)) entry.controller.abort(error);
    this.#settle(entry, { error });
    this.#reportPositions();
  }

  #settle(entry: Entry, outcome: { value: unknown } | { error: unknown }): void {
    if (entry.settled) return;
    entry.settled = true;
    entry.release();
    if ('error' in outcome) entry.reject(outcome.error);
    else entry.resolve(outcome.value);
  }

  /** Tells each waiting request its place in line, when it changed since last told. */
  #reportPositions(): void {
    // A callback may abort its own or another request, which edits the line: walk a snapshot, look positions up live.
    for (const entry of [...this.#waiting]) {
      const position = this.#waiting.indexOf(entry) + 1;
      if (position === 0 || position === entry.lastPosition) continue;
      entry.lastPosition = position;
      try {
        entry.onPosition?.(position);
      } catch {
        // A broken progress callback must not break the queue for everyone else.
      }
    }
  }
}

/** setTimeout fires at once for longer delays; nobody waits 24 days for an answer anyway. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function checkTimeout(timeoutMs: number): void {
  if (!(timeoutMs >= 0)) {
    throw new RangeError(`timeoutMs must be a number of milliseconds >= 0, got ${timeoutMs}`);
  }
}
