/**
 * Fronts and workers as real processes (`node bin/blip2-bot.js start --role front` / `worker`) on a real
 * redis-server: the small CI version of `npm run bench:load`, with a worker SIGKILLed in the middle of a job.
 */
import { describe, expect, it } from 'vitest';
import { runLoadTest } from '../../bench/load-run.js';
import { HAS_REDIS, REDIS_SKIP_REASON } from './redis-fixture.js';

describe.skipIf(!HAS_REDIS)('scale-out: fronts and workers as processes', () => {
  it('answers every request exactly once across two fronts while a worker is SIGKILLed mid-job', async () => {
    const lines: string[] = [];
    const report = await runLoadTest({
      fronts: 2,
      workers: 2,
      requests: 12,
      killWorker: true,
      concurrency: 4,
      log: (l) => lines.push(l),
    });
    console.info(`scale-out: ${JSON.stringify(report)}`);
    expect(report.workerKilled).toBe(true);
    expect(lines.some((l) => l.startsWith('SIGKILLed worker'))).toBe(true);
    expect(report.lostReasons).toEqual([]);
    expect(report).toMatchObject({ requests: 12, answered: 12, lost: 0, duplicated: 0, workers: 2 });
    expect(report.p50Ms).toBeGreaterThan(0);
    expect(report.maxMs).toBeGreaterThanOrEqual(report.p95Ms);
  }, 180_000);
});

describe.skipIf(HAS_REDIS)('scale-out (skipped)', () => {
  it.skip(REDIS_SKIP_REASON, () => {});
});
