/**
 * `npm run bench:ack -- [--model dir] [--runs N]`: how long the adapters' thread takes to answer while the model
 * encodes a new picture — the Slack ack / Discord heartbeat / HTTP latency of issue 12.5. A loopback HTTP server
 * on the main thread is pinged every 10 ms during each vision run, with the model in process (Blip2Engine) and in
 * its worker thread (ThreadedEngine, what `blip2-bot start` uses). Default model: the synthetic full-size XL at
 * /work/big-xl/mixed when present, else the demo model (whose 10 ms vision run hides the problem).
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { ensureDemoModel } from '../src/demo/demo-model.js';
import type { ImageQuestionEngine } from '../src/engine/api.js';
import { Blip2Engine } from '../src/engine/engine.js';
import { ThreadedEngine } from '../src/engine/threaded-engine.js';
import { benchArgs, median, table } from './util.js';

const XL = '/work/big-xl/mixed';
const { values } = benchArgs(
  { model: { type: 'string' }, runs: { type: 'string', default: '3' } },
  'Usage: npm run bench:ack -- [--model <model-dir>] [--runs 3]',
);
const modelDir = values.model ?? (existsSync(`${XL}/manifest.json`) ? XL : await ensureDemoModel());
const runs = Math.max(1, Number(values.runs) || 3);

const server = createServer((_req, res) => res.end('ok'));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

async function picture(seed: number): Promise<Uint8Array> {
  const background = { r: (seed * 53) % 256, g: (seed * 97) % 256, b: (seed * 151) % 256 };
  return new Uint8Array(
    await sharp({ create: { width: 640, height: 480, channels: 3, background } })
      .jpeg()
      .toBuffer(),
  );
}

/** Pings the main thread's server every 10 ms while `work` runs; returns the round trips. */
async function pingsDuring(work: () => Promise<unknown>): Promise<number[]> {
  const latencies: number[] = [];
  let running = true;
  const pinger = (async () => {
    while (running) {
      const t = performance.now();
      // A fresh connection each time: a kept-alive one may be closed by the server's idle timer, which fires late
      // when the thread was held, and a reset would say nothing about latency.
      await fetch(url, { headers: { connection: 'close' } })
        .then((r) => r.text())
        .then(
          () => latencies.push(performance.now() - t),
          () => {},
        );
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await work();
  running = false;
  await pinger;
  return latencies;
}

const rows: (string | number)[][] = [];
let seed = 1;
for (const mode of ['in process', 'worker thread'] as const) {
  const started = performance.now();
  const engine: ImageQuestionEngine =
    mode === 'in process'
      ? await Blip2Engine.load(modelDir, { store: { kind: 'memory' } })
      : await ThreadedEngine.load(modelDir, { store: { kind: 'memory' } });
  console.error(
    `[bench:ack] ${mode}: loaded ${engine.modelId} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  const all: number[] = [];
  const vision: number[] = [];
  for (let i = 0; i < runs; i++) {
    const bytes = await picture(seed++);
    const latencies = await pingsDuring(async () => {
      const r = await engine.generate({ image: bytes, options: { numBeams: 1, maxNewTokens: 1 } });
      vision.push(r.timings.visionMs);
    });
    all.push(...latencies);
  }
  await engine.close();
  const sorted = [...all].sort((a, b) => a - b);
  rows.push([
    mode,
    Math.round(median(vision)),
    all.length,
    median(all).toFixed(1),
    sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))]!.toFixed(1),
    sorted.at(-1)!.toFixed(1),
  ]);
}
server.close();
console.log(`model: ${modelDir}, ${runs} new picture(s) per mode`);
console.log(
  table(['inference', 'vision ms (median)', 'pings', 'ack p50 ms', 'ack p95 ms', 'ack max ms'], rows),
);
