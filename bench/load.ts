/**
 * `npm run bench:load -- [--fronts N] [--workers N] [--requests N] [--kill-worker] [--json out.json]
 * [--model dir] [--concurrency N] [--worker-concurrency N]`: the scale-out load test (bench/load-run.ts) against QUEUE_URL, or a
 * redis-server of its own on a free loopback port. Prints one table row; with --json writes
 * `{ requests, answered, lost, duplicated, p50Ms, p95Ms, maxMs, throughputPerMinute, workers, workerKilled }`.
 */
import { writeFileSync } from 'node:fs';
import { hasRedisServer, runLoadTest } from './load-run.js';
import { benchArgs, table } from './util.js';

const { values } = benchArgs(
  {
    fronts: { type: 'string', default: '1' },
    workers: { type: 'string', default: '2' },
    requests: { type: 'string', default: '200' },
    'kill-worker': { type: 'boolean', default: false },
    json: { type: 'string' },
    model: { type: 'string' },
    concurrency: { type: 'string', default: '8' },
    'worker-concurrency': { type: 'string', default: '1' },
  },
  'Usage: npm run bench:load -- [--fronts 1] [--workers 2] [--requests 200] [--kill-worker] [--json out.json]\n' +
    '                             [--model <model-dir>] [--concurrency 8] [--worker-concurrency 1]',
);

const count = (name: string, raw: string | undefined, min: number) => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`bench:load: --${name} must be a whole number >= ${min} (got ${raw})`);
    process.exit(2);
  }
  return n;
};
const fronts = count('fronts', values.fronts, 1);
const workers = count('workers', values.workers, 1);
const requests = count('requests', values.requests, 1);
const concurrency = count('concurrency', values.concurrency, 1);
const workerConcurrency = count('worker-concurrency', values['worker-concurrency'], 1);
const queueUrl = process.env.QUEUE_URL;
if (!queueUrl && !hasRedisServer()) {
  console.error(
    'bench:load: redis-server is not installed (apt-get install redis-server) and QUEUE_URL is not set',
  );
  process.exit(2);
}
if (values['kill-worker'] && workers < 2) {
  console.error('bench:load: --kill-worker needs --workers 2 or more (someone has to take the job over)');
  process.exit(2);
}

const report = await runLoadTest({
  fronts,
  workers,
  requests,
  killWorker: values['kill-worker'],
  concurrency,
  workerConcurrency,
  ...(queueUrl ? { queueUrl } : {}),
  ...(values.model ? { modelDir: values.model } : {}),
  log: (line) => console.error(`[bench:load] ${line}`),
});
const { lostReasons, fronts: _f, ...fields } = report;
console.log(
  table(
    [
      'fronts',
      'workers',
      'jobs per worker',
      'worker killed',
      'requests',
      'answered',
      'lost',
      'duplicated',
      'p50 ms',
      'p95 ms',
      'max ms',
      'answers/min',
    ],
    [
      [
        fronts,
        workers,
        workerConcurrency,
        report.workerKilled ? 'yes' : 'no',
        report.requests,
        report.answered,
        report.lost,
        report.duplicated,
        report.p50Ms,
        report.p95Ms,
        report.maxMs,
        report.throughputPerMinute,
      ],
    ],
  ),
);
if (lostReasons.length > 0) console.error(`[bench:load] lost: ${lostReasons.join(', ')}`);
if (values.json) writeFileSync(values.json, `${JSON.stringify(fields, null, 2)}\n`);
process.exitCode = report.lost === 0 && report.duplicated === 0 ? 0 : 1;
