import { describe, expect, it } from 'vitest';
import { QueueFullError, RequestAbortedError, RequestTimeoutError } from '../../src/engine/errors.js';
import { InferenceQueue, QueueClosedError } from '../../src/engine/queue.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts, like a well-behaved inference step. */
function work(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A job that runs until released (or aborted), recording what happened to it. */
function controlledJob<T>(value: T) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const state = { started: false, finished: false, signal: undefined as AbortSignal | undefined };
  const job = async (signal: AbortSignal): Promise<T> => {
    state.started = true;
    state.signal = signal;
    await Promise.race([
      released,
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    ]).finally(() => {
      state.finished = true;
    });
    return value;
  };
  return { job, release, state };
}

/** Lets pending promise callbacks run. */
const tick = () => sleep(0);

describe('InferenceQueue', () => {
  it('runs one job at a time, first come first served', async () => {
    const queue = new InferenceQueue({ capacity: 10 });
    let active = 0;
    let maxActive = 0;
    const order: number[] = [];
    const results = await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        queue.run(async (signal) => {
          active++;
          maxActive = Math.max(maxActive, active);
          order.push(i);
          await work(10, signal);
          active--;
          return i * 10;
        }),
      ),
    );
    expect(results).toEqual([0, 10, 20, 30, 40]);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(maxActive).toBe(1);
    expect(queue.running).toBe(false);
    expect(queue.length).toBe(0);
  });

  it('reports length and running', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    expect(queue.running).toBe(false);
    const a = controlledJob('a');
    const b = controlledJob('b');
    const pa = queue.run(a.job);
    const pb = queue.run(b.job);
    expect(queue.running).toBe(true);
    expect(queue.length).toBe(1);
    expect(a.state.started).toBe(true);
    expect(b.state.started).toBe(false);
    a.release();
    expect(await pa).toBe('a');
    expect(queue.length).toBe(0);
    expect(b.state.started).toBe(true);
    b.release();
    expect(await pb).toBe('b');
    expect(queue.running).toBe(false);
  });

  it('keeps going after a job throws or rejects', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const failing = queue.run(async () => {
      await sleep(5);
      throw new Error('onnx exploded');
    });
    const throwingSync = queue.run((() => {
      throw new Error('sync failure');
    }) as unknown as (signal: AbortSignal) => Promise<never>);
    const fine = queue.run(async () => 'ok');
    await expect(failing).rejects.toThrow('onnx exploded');
    await expect(throwingSync).rejects.toThrow('sync failure');
    expect(await fine).toBe('ok');
  });

  it('refuses at once with QueueFullError when capacity requests already wait', async () => {
    const queue = new InferenceQueue({ capacity: 2 });
    const a = controlledJob('a');
    const pa = queue.run(a.job);
    const pb = queue.run(async () => 'b');
    const pc = queue.run(async () => 'c');
    const started = Date.now();
    const full = queue.run(async () => 'd');
    await expect(full).rejects.toBeInstanceOf(QueueFullError);
    await expect(full).rejects.toMatchObject({ capacity: 2, userMessage: expect.stringMatching(/busy/) });
    expect(Date.now() - started).toBeLessThan(50);
    expect(queue.length).toBe(2);
    a.release();
    expect(await Promise.all([pa, pb, pc])).toEqual(['a', 'b', 'c']);
    // Room again.
    expect(await queue.run(async () => 'e')).toBe('e');
  });

  it('with capacity 0 runs a job only when idle', async () => {
    const queue = new InferenceQueue({ capacity: 0 });
    const a = controlledJob('a');
    const pa = queue.run(a.job);
    await expect(queue.run(async () => 'b')).rejects.toBeInstanceOf(QueueFullError);
    a.release();
    await pa;
    expect(await queue.run(async () => 'c')).toBe('c');
  });

  it('reports each waiting request its position when it enqueues and whenever it changes', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const seen: Record<string, number[]> = { a: [], b: [], c: [], d: [] };
    const jobs = {
      a: controlledJob('a'),
      b: controlledJob('b'),
      c: controlledJob('c'),
      d: controlledJob('d'),
    };
    const promises = (['a', 'b', 'c', 'd'] as const).map((name) =>
      queue.run(jobs[name].job, { onPosition: (p) => seen[name]!.push(p) }),
    );
    expect(seen).toEqual({ a: [], b: [1], c: [2], d: [3] });
    jobs.a.release();
    await promises[0];
    await tick();
    expect(seen).toEqual({ a: [], b: [1], c: [2, 1], d: [3, 2] });
    jobs.b.release();
    await promises[1];
    await tick();
    expect(seen).toEqual({ a: [], b: [1], c: [2, 1], d: [3, 2, 1] });
    jobs.c.release();
    jobs.d.release();
    await Promise.all(promises);
    expect(seen.d).toEqual([3, 2, 1]);
  });

  it('survives a position callback that throws', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const a = controlledJob('a');
    const pa = queue.run(a.job);
    const pb = queue.run(async () => 'b', {
      onPosition: () => {
        throw new Error('broken UI');
      },
    });
    a.release();
    expect(await Promise.all([pa, pb])).toEqual(['a', 'b']);
  });

  it('cancels a waiting request on abort: it never runs and the others move up', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const a = controlledJob('a');
    const b = controlledJob('b');
    const c = controlledJob('c');
    const positionsC: number[] = [];
    const controller = new AbortController();
    const pa = queue.run(a.job);
    const pb = queue.run(b.job, { signal: controller.signal });
    const pc = queue.run(c.job, { onPosition: (p) => positionsC.push(p) });
    expect(positionsC).toEqual([2]);
    controller.abort();
    await expect(pb).rejects.toBeInstanceOf(RequestAbortedError);
    expect(queue.length).toBe(1);
    expect(positionsC).toEqual([2, 1]);
    a.release();
    c.release();
    expect(await pa).toBe('a');
    expect(await pc).toBe('c');
    expect(b.state.started).toBe(false);
  });

  it('cancels a running job on abort and starts the next only once it has stopped', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const controller = new AbortController();
    let stopped = false;
    let nextStartedAfterStop: boolean | undefined;
    let jobSignal: AbortSignal | undefined;
    const slow = queue.run(
      async (signal) => {
        jobSignal = signal;
        try {
          await work(5_000, signal);
        } finally {
          // Simulates an onnxruntime step that finishes a little after the abort.
          await sleep(30);
          stopped = true;
        }
      },
      { signal: controller.signal },
    );
    const next = queue.run(async () => {
      nextStartedAfterStop = stopped;
      return 'next';
    });
    await sleep(10);
    controller.abort(new Error('user pressed stop'));
    await expect(slow).rejects.toBeInstanceOf(RequestAbortedError);
    // The caller hears back at once, before the job has wound down.
    expect(stopped).toBe(false);
    await expect(slow).rejects.toMatchObject({ cause: { message: 'user pressed stop' } });
    expect(jobSignal?.aborted).toBe(true);
    expect(jobSignal?.reason).toBeInstanceOf(RequestAbortedError);
    expect(queue.running).toBe(true);
    expect(await next).toBe('next');
    expect(nextStartedAfterStop).toBe(true);
  });

  it('rejects at once for an already aborted signal', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    let called = false;
    const p = queue.run(
      async () => {
        called = true;
      },
      { signal: AbortSignal.abort() },
    );
    await expect(p).rejects.toBeInstanceOf(RequestAbortedError);
    expect(called).toBe(false);
    expect(queue.running).toBe(false);
  });

  it('times out a request that waits too long, without running it', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const a = controlledJob('a');
    const b = controlledJob('b');
    const pa = queue.run(a.job);
    const started = Date.now();
    const pb = queue.run(b.job, { timeoutMs: 60 });
    await expect(pb).rejects.toBeInstanceOf(RequestTimeoutError);
    await expect(pb).rejects.toMatchObject({ timeoutMs: 60 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    expect(queue.length).toBe(0);
    a.release();
    await pa;
    await tick();
    expect(b.state.started).toBe(false);
  });

  it('counts waiting and running time against the timeout and aborts the job', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const first = queue.run((signal) => work(60, signal));
    let jobSignal: AbortSignal | undefined;
    let runStartedAt = 0;
    const started = Date.now();
    // 60 ms waiting + 100 ms running would finish at 160 ms: over the 120 ms limit.
    const second = queue.run(
      async (signal) => {
        runStartedAt = Date.now();
        jobSignal = signal;
        await work(100, signal);
        return 'too late';
      },
      { timeoutMs: 120 },
    );
    await first;
    await expect(second).rejects.toBeInstanceOf(RequestTimeoutError);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(115);
    // Had the limit covered running time only, the job (done at ~160 ms) would have finished before it.
    expect(elapsed).toBeLessThan(300);
    expect(runStartedAt - started).toBeGreaterThanOrEqual(55);
    expect(jobSignal?.aborted).toBe(true);
    expect(jobSignal?.reason).toBeInstanceOf(RequestTimeoutError);
  });

  it('applies the default timeout unless a request sets its own (0 = none)', async () => {
    const queue = new InferenceQueue({ capacity: 5, defaultTimeoutMs: 40 });
    await expect(queue.run((signal) => work(200, signal))).rejects.toBeInstanceOf(RequestTimeoutError);
    await queue.drain();
    expect(await queue.run((signal) => work(80, signal).then(() => 'patient'), { timeoutMs: 0 })).toBe(
      'patient',
    );
    expect(await queue.run((signal) => work(80, signal).then(() => 'longer'), { timeoutMs: 500 })).toBe(
      'longer',
    );
  });

  it('drain waits until nothing waits or runs', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    await queue.drain(); // idle: at once
    const done: string[] = [];
    void queue.run((signal) => work(30, signal).then(() => done.push('a')));
    void queue.run((signal) => work(30, signal).then(() => done.push('b')));
    await queue.drain();
    expect(done).toEqual(['a', 'b']);
    expect(queue.running).toBe(false);
  });

  it('close rejects waiting requests, waits for the running one and refuses new ones', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const a = controlledJob('a');
    const b = controlledJob('b');
    const pa = queue.run(a.job);
    const pb = queue.run(b.job);
    let closed = false;
    const closing = queue.close().then(() => {
      closed = true;
    });
    await expect(pb).rejects.toBeInstanceOf(QueueClosedError);
    await expect(queue.run(async () => 'late')).rejects.toBeInstanceOf(QueueClosedError);
    expect(queue.closed).toBe(true);
    await sleep(20);
    expect(closed).toBe(false);
    a.release();
    expect(await pa).toBe('a');
    await closing;
    expect(closed).toBe(true);
    expect(b.state.started).toBe(false);
    await queue.close(); // again: nothing to wait for
  });

  it('close can abort the running job', async () => {
    const queue = new InferenceQueue({ capacity: 5 });
    const a = controlledJob('a');
    const pa = queue.run(a.job);
    await queue.close({ abortRunning: true });
    await expect(pa).rejects.toBeInstanceOf(QueueClosedError);
    expect(a.state.signal?.aborted).toBe(true);
    expect(a.state.finished).toBe(true);
    expect(queue.running).toBe(false);
  });

  it('validates its settings', () => {
    expect(() => new InferenceQueue({ capacity: -1 })).toThrow(/capacity/);
    expect(() => new InferenceQueue({ capacity: 1.5 })).toThrow(/capacity/);
    expect(() => new InferenceQueue({ capacity: 1, defaultTimeoutMs: Number.NaN })).toThrow(/timeoutMs/);
  });
  it('with concurrency 2 runs two jobs at once; the third waits as #1, refused past capacity; close waits for both', async () => {
    const queue = new InferenceQueue({ capacity: 1, concurrency: 2 });
    const a = controlledJob('a');
    const b = controlledJob('b');
    const c = controlledJob('c');
    const positions: number[] = [];
    const ra = queue.run(a.job);
    const rb = queue.run(b.job);
    const rc = queue.run(c.job, { onPosition: (p) => positions.push(p) });
    await expect(queue.run(async () => 'd')).rejects.toBeInstanceOf(QueueFullError);
    await tick();
    expect([a.state.started, b.state.started, c.state.started]).toEqual([true, true, false]);
    expect(positions).toEqual([1]);
    expect(queue.length).toBe(1);
    b.release();
    expect(await rb).toBe('b');
    await tick();
    expect(c.state.started).toBe(true);
    let closed = false;
    const closing = queue.close().then(() => {
      closed = true;
    });
    a.release();
    expect(await ra).toBe('a');
    await tick();
    expect(closed).toBe(false); // c still runs
    c.release();
    expect(await rc).toBe('c');
    await closing;
    expect(queue.running).toBe(false);
  });

  it('refuses a concurrency below 1', () => {
    expect(() => new InferenceQueue({ capacity: 1, concurrency: 0 })).toThrow(RangeError);
  });
});
