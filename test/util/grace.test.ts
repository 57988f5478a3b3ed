import { describe, expect, it } from 'vitest';
import { waitWithGrace } from '../../src/util/grace.js';

const settleIn = (ms: number, fail = false) =>
  new Promise<void>((resolve, reject) => setTimeout(() => (fail ? reject(new Error('x')) : resolve()), ms));

describe('waitWithGrace', () => {
  it('returns "done" as soon as every job has settled, failures included', async () => {
    const started = performance.now();
    expect(await waitWithGrace([settleIn(10), settleIn(20, true)], 5_000)).toBe('done');
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('returns "timeout" after the grace period when a job runs on', async () => {
    const started = performance.now();
    expect(await waitWithGrace([new Promise(() => {})], 50)).toBe('timeout');
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });

  it('also waits for jobs that start while it waits (a live Set)', async () => {
    const jobs = new Set<Promise<void>>();
    const track = (job: Promise<void>) => {
      jobs.add(job);
      void job.finally(() => jobs.delete(job));
    };
    let lateDone = false;
    track(
      settleIn(10).then(() => {
        track(
          settleIn(30).then(() => {
            lateDone = true;
          }),
        );
      }),
    );
    expect(await waitWithGrace(jobs, 5_000)).toBe('done');
    expect(lateDone).toBe(true);
  });
});
