/**
 * One model's measurements in a fresh process (so load time, first answer and peak RSS are this model's alone).
 * Prints one JSON line. Run through `npm run bench`, not by hand.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import type { GenerateResult, GenerationOptions } from '../src/engine/api.js';
import { Blip2Engine } from '../src/engine/engine.js';
import { ort } from '../src/engine/ort.js';
import { DECODER_IO } from '../src/model/graph-io.js';
import { type OpShare, summariseProfiles } from './profile.js';
import { median } from './util.js';

export interface StageTimes {
  preprocessMs: number;
  visionMs: number;
  qformerMs: number;
  encoderMs: number;
  decodeMsPerToken: number;
  totalMs: number;
}

export interface WorkerReport {
  model: string;
  modelId: string;
  dtype: string;
  loadMs: number;
  firstAnswerMs: number;
  /** Peak RSS while answering one request at a time. */
  peakRssBytes: number;
  /** Peak RSS including the concurrent scenarios. */
  peakRssConcurrentBytes?: number;
  tokens: number;
  runs: number;
  scenarios: Record<'newGreedy' | 'newBeam5' | 'followGreedy' | 'followBeam5', StageTimes>;
  /** With --profile: top operator types per graph over the whole run. */
  profile?: OpShare[];
  /** Whether this model's decoder merges the decode steps of requests in flight (converted with the mask). */
  mergedDecode?: boolean;
  /** Several people at once (5 beams, the bot's default): absent when run with --concurrency none. */
  concurrency?: ConcurrencyResult[];
  /** FlanT5: one decoder run (10 cached positions, 43 encoder positions) by batch rows, median ms. */
  decoderStepByRows?: { rows: number; ms: number }[];
}

/** N requests sent at the same moment: until all are answered, and each one's latency. */
export interface ConcurrencyResult {
  kind: 'follow-up' | 'new picture';
  requests: number;
  numBeams: number;
  allAnsweredMs: number;
  p50Ms: number;
  p95Ms: number;
  /** Decoder rows per merged step over this scenario (1 request of 5 beams: 5). */
  rowsPerStep: number;
}

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    runs: { type: 'string' },
    tokens: { type: 'string' },
    threads: { type: 'string' },
    profile: { type: 'boolean' },
    concurrency: { type: 'string' },
  },
});
const runs = Number(values.runs ?? 3);
const tokens = Number(values.tokens ?? 10);
const concurrencyLevels =
  values.concurrency === 'none'
    ? []
    : (values.concurrency ?? '1,4,8').split(',').map((n) => {
        const v = Number(n);
        if (!Number.isInteger(v) || v < 1) throw new Error(`--concurrency takes whole numbers, got ${n}`);
        return v;
      });

/** A distinct 640×480 photo-like image per seed, so new-image runs never hit the cache. */
async function image(seed: number): Promise<Uint8Array> {
  const w = 640;
  const h = 480;
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      raw[i] = (x + seed * 13) & 255;
      raw[i + 1] = (y * 2 + seed * 7) & 255;
      raw[i + 2] = ((x ^ y) + seed) & 255;
    }
  }
  return new Uint8Array(
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
}

function stages(results: GenerateResult[]): StageTimes {
  const pick = (f: (r: GenerateResult) => number) => median(results.map(f));
  return {
    preprocessMs: pick((r) => r.timings.preprocessMs),
    visionMs: pick((r) => r.timings.visionMs),
    qformerMs: pick((r) => r.timings.qformerMs),
    encoderMs: pick((r) => r.timings.encoderMs),
    decodeMsPerToken: pick((r) => r.timings.decodeMs / Math.max(1, r.timings.decodeSteps)),
    totalMs: pick((r) => r.timings.totalMs),
  };
}

const profileDir = values.profile ? mkdtempSync(join(tmpdir(), 'blip2-profile-')) : undefined;
const started = performance.now();
const engine = await Blip2Engine.load(values.model!, {
  ...(profileDir ? { profileDir } : {}),
  store: { kind: 'memory' },
  requestTimeoutMs: 0,
  ...(values.threads ? { threads: Number(values.threads) } : {}),
});
const loadMs = performance.now() - started;
const fixed = (numBeams: number): GenerationOptions => ({
  numBeams,
  maxNewTokens: tokens,
  minNewTokens: tokens,
  ignoreEos: true,
});
const ask = (img: Uint8Array | string, numBeams: number) =>
  engine.generate({ image: img, question: 'what is in the picture?', options: fixed(numBeams) });

let seed = 1;
await ask(await image(seed++), 1);
const firstAnswerMs = performance.now(); // since the process started

const newGreedy: GenerateResult[] = [];
const newBeam5: GenerateResult[] = [];
const followGreedy: GenerateResult[] = [];
const followBeam5: GenerateResult[] = [];
for (let i = 0; i < runs; i++) {
  const a = await image(seed++);
  newGreedy.push(await ask(a, 1));
  followGreedy.push(await ask(engine.imageKey(a), 1));
  newBeam5.push(await ask(await image(seed++), 5));
  followBeam5.push(await ask(engine.imageKey(a), 5));
}
/** Nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

const CONCURRENT_BEAMS = 5;
async function concurrent(kind: ConcurrencyResult['kind'], n: number): Promise<ConcurrencyResult> {
  const images = await Promise.all(Array.from({ length: n }, () => image(seed++)));
  // Follow-ups: every picture is in the cache first, as after each person's first question.
  if (kind === 'follow-up') for (const img of images) await engine.encodeImage(img);
  const stats = engine.decodeBatch.batch.stats;
  const before = { steps: stats.steps, rows: stats.rows };
  const start = performance.now();
  const latencies = await Promise.all(
    images.map(async (img) => {
      await ask(kind === 'follow-up' ? engine.imageKey(img) : img, CONCURRENT_BEAMS);
      return performance.now() - start;
    }),
  );
  const allAnsweredMs = performance.now() - start;
  return {
    kind,
    requests: n,
    numBeams: CONCURRENT_BEAMS,
    allAnsweredMs,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    rowsPerStep: (stats.rows - before.rows) / Math.max(1, stats.steps - before.steps),
  };
}
// One person at a time so far; the concurrent scenarios hold several requests' caches at once.
const peakRssBytes = process.resourceUsage().maxRSS * 1024;
const concurrency: ConcurrencyResult[] = [];
for (const kind of ['follow-up', 'new picture'] as const) {
  for (const n of concurrencyLevels) concurrency.push(await concurrent(kind, n));
}

/** What a merged step costs by its number of rows: the weights are streamed once whatever the rows. */
async function decoderStepByRows(rowsList: readonly number[]): Promise<{ rows: number; ms: number }[]> {
  const config = engine.model.config;
  if (config.languageModel === 'opt') return [];
  const t = config.text;
  const withMask = engine.decodeBatch.batch.graph.canMerge;
  const past = 10;
  const encoder = 43;
  const results: { rows: number; ms: number }[] = [];
  for (const rows of rowsList) {
    const zeros = (dims: number[]) =>
      new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
    const ones = (dims: number[]) =>
      new ort.Tensor('int64', new BigInt64Array(dims[0]! * dims[1]!).fill(1n), dims);
    const feeds: Record<string, ort.Tensor> = {
      [DECODER_IO.inputIds]: new ort.Tensor('int64', new BigInt64Array(rows), [rows, 1]),
      [DECODER_IO.encoderAttentionMask]: ones([rows, encoder]),
      ...(withMask ? { [DECODER_IO.decoderAttentionMask]: ones([rows, past + 1]) } : {}),
    };
    const pastT = zeros([rows, t.numHeads, past, t.dKv]);
    const crossT = zeros([rows, t.numHeads, encoder, t.dKv]);
    for (let i = 0; i < t.numDecoderLayers; i++) {
      feeds[DECODER_IO.pastKey(i)] = pastT;
      feeds[DECODER_IO.pastValue(i)] = pastT;
      feeds[DECODER_IO.crossKey(i)] = crossT;
      feeds[DECODER_IO.crossValue(i)] = crossT;
    }
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const start = performance.now();
      await engine.model.runDecoder(feeds);
      if (i > 0) times.push(performance.now() - start);
    }
    results.push({ rows, ms: median(times) });
  }
  return results;
}
const decoderRows = await decoderStepByRows([1, 5, 10, 20, 40]);

const report: WorkerReport = {
  model: values.model!,
  modelId: engine.modelId,
  dtype: engine.model.manifest.dtype,
  loadMs,
  firstAnswerMs,
  peakRssBytes,
  ...(concurrency.length > 0 ? { peakRssConcurrentBytes: process.resourceUsage().maxRSS * 1024 } : {}),
  tokens,
  runs,
  scenarios: {
    newGreedy: stages(newGreedy),
    newBeam5: stages(newBeam5),
    followGreedy: stages(followGreedy),
    followBeam5: stages(followBeam5),
  },
  mergedDecode: engine.decodeBatch.batch.graph.canMerge,
  ...(concurrency.length > 0 ? { concurrency } : {}),
  ...(decoderRows.length > 0 ? { decoderStepByRows: decoderRows } : {}),
};
if (profileDir) {
  engine.model.endProfiling();
  report.profile = summariseProfiles(profileDir);
  rmSync(profileDir, { recursive: true, force: true });
}
await engine.close();
console.log(JSON.stringify(report));
