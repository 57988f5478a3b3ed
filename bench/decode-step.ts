/**
 * `npm run bench:step -- --model <dir> [--rows 1,5] [--past 10] [--encoder 43] [--runs 15] [--json out.json]`
 *
 * Where one FlanT5 decoder step's time goes, for issue 13's "decode near the limit": the decoder graph alone in
 * this process, fed like the engine feeds it (B rows, P cached positions, E encoder positions), timed from
 * JavaScript and, in a second session with onnxruntime's profiler, split into
 *   - the boundary: `session.run` from JavaScript minus onnxruntime's own `model_run` (turning ~100 feeds into
 *     OrtValues, ~50 outputs back into JavaScript tensors),
 *   - onnxruntime's overhead inside the run: `model_run` minus the sum of its kernels (scheduling, allocation),
 *   - kernels by kind: the weight MatMuls (`wo` apart: its activations stay fp32), attention, the self-attention
 *     cache concatenation, the rest.
 * Times are the fastest of `--runs` (other processes on a shared machine only add time).
 * Then two things the issue asks to measure: preallocated outputs (`session.run(feeds, fetches)` with our own
 * output tensors: does onnxruntime-node write into them, and does it pay?) and the weight bytes streamed per step
 * against the step's time.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSession, ort } from '../src/engine/ort.js';
import { resolveBlip2Config } from '../src/model/config.js';
import { DECODER_IO } from '../src/model/graph-io.js';
import { readManifest } from '../src/model/manifest.js';
import { graphFormat } from '../src/model/precision.js';
import { benchArgs, seededNormalArray, table } from './util.js';
import { decoderStepBytes } from './work.js';

const USAGE =
  'Usage: npm run bench:step -- --model <model-dir> [--rows 1,5] [--past 10] [--encoder 43] [--runs 15] [--json out.json]';
const { values } = benchArgs(
  {
    model: { type: 'string' },
    rows: { type: 'string' },
    past: { type: 'string' },
    encoder: { type: 'string' },
    runs: { type: 'string' },
    json: { type: 'string' },
  },
  USAGE,
);
if (!values.model) {
  console.error(USAGE);
  process.exit(2);
}
const modelDir = values.model;
const rowsList = (values.rows ?? '1,5').split(',').map(Number);
const past = Number(values.past ?? 10);
const encoderLength = Number(values.encoder ?? 43);
const runs = Math.max(3, Number(values.runs ?? 15));

const manifest = await readManifest(modelDir);
if (!manifest) {
  console.error(`${modelDir} is not a converted model (no manifest.json)`);
  process.exit(2);
}
const config = resolveBlip2Config(manifest.source.config);
if (config.languageModel !== 't5' || !manifest.graphs.decoder) {
  console.error('bench:step measures the FlanT5 decoder step; this model has none');
  process.exit(2);
}
const t = config.text;
const decoderFile = join(modelDir, manifest.graphs.decoder.file);
// The engine's session options (src/engine/model.ts), so the step is the one the bot runs.
const sessionOptions: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  enableCpuMemArena: false,
  executionMode: 'sequential',
};

function feedsFor(rows: number, hasMask: boolean): Record<string, ort.Tensor> {
  const f32 = (dims: number[], seed: number) =>
    new ort.Tensor(
      'float32',
      seededNormalArray(
        dims.reduce((a, b) => a * b, 1),
        1,
        seed,
      ),
      dims,
    );
  const ones = (dims: [number, number]) =>
    new ort.Tensor('int64', new BigInt64Array(dims[0] * dims[1]).fill(1n), dims);
  const feeds: Record<string, ort.Tensor> = {
    [DECODER_IO.inputIds]: new ort.Tensor('int64', new BigInt64Array(rows).fill(3n), [rows, 1]),
    [DECODER_IO.encoderAttentionMask]: ones([rows, encoderLength]),
    ...(hasMask ? { [DECODER_IO.decoderAttentionMask]: ones([rows, past + 1]) } : {}),
  };
  // Distinct tensors per input, as the engine feeds them (sharing one would hide per-tensor costs).
  for (let i = 0; i < t.numDecoderLayers; i++) {
    feeds[DECODER_IO.pastKey(i)] = f32([rows, t.numHeads, past, t.dKv], 4 * i);
    feeds[DECODER_IO.pastValue(i)] = f32([rows, t.numHeads, past, t.dKv], 4 * i + 1);
    feeds[DECODER_IO.crossKey(i)] = f32([rows, t.numHeads, encoderLength, t.dKv], 4 * i + 2);
    feeds[DECODER_IO.crossValue(i)] = f32([rows, t.numHeads, encoderLength, t.dKv], 4 * i + 3);
  }
  return feeds;
}

/** Our own output tensors, sized for this step. */
function outputsFor(rows: number): Record<string, ort.Tensor> {
  const zeros = (dims: number[]) =>
    new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
  const out: Record<string, ort.Tensor> = { [DECODER_IO.logits]: zeros([rows, 1, t.vocabSize]) };
  for (let i = 0; i < t.numDecoderLayers; i++) {
    out[DECODER_IO.presentKey(i)] = zeros([rows, t.numHeads, past + 1, t.dKv]);
    out[DECODER_IO.presentValue(i)] = zeros([rows, t.numHeads, past + 1, t.dKv]);
  }
  return out;
}

async function timeRuns(run: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < 2; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  return times;
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: { op_name?: string };
}

type Part = 'wo MatMul' | 'other weight MatMuls' | 'attention' | 'cache concat' | 'other kernels';
const PARTS: Part[] = ['wo MatMul', 'other weight MatMuls', 'attention', 'cache concat', 'other kernels'];

/** Which part of the step a kernel is, from its node name and operator (names: src/convert/layers.ts, graphs/t5.ts). */
function partOf(node: string, op: string): Part {
  if (/\/(QK|PV)\//.test(node) || op === 'Softmax') return 'attention';
  if (op === 'Concat' && node.endsWith('/ConcatPast')) return 'cache concat';
  const weight = ['MatMulNBits', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'MatMul'].includes(op);
  if (weight) return /\/wo\//.test(`${node}/`) ? 'wo MatMul' : 'other weight MatMuls';
  return 'other kernels';
}

interface StepProfile {
  modelRunMs: number;
  kernelsMs: number;
  parts: Record<Part, number>;
}

/** The fastest of the profiled runs after the warm-up ones. */
function readProfile(dir: string, skipRuns: number): StepProfile {
  const file = readdirSync(dir).find((f) => f.endsWith('.json'));
  if (!file) throw new Error('onnxruntime wrote no profile');
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[];
  const runsOf = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run')
    .sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0))
    .slice(skipRuns);
  const perRun = runsOf.map((run) => {
    const start = run.ts ?? 0;
    const end = start + (run.dur ?? 0);
    const parts = Object.fromEntries(PARTS.map((p) => [p, 0])) as Record<Part, number>;
    let kernels = 0;
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
      if ((e.ts ?? 0) < start || (e.ts ?? 0) > end) continue;
      const us = e.dur ?? 0;
      parts[partOf(e.name.slice(0, -'_kernel_time'.length), e.args.op_name)] += us;
      kernels += us;
    }
    return { modelRunMs: (run.dur ?? 0) / 1000, kernelsMs: kernels / 1000, parts };
  });
  // The fastest run, whole: on a shared machine other processes only ever add time (as bench/kernels.ts
  // takes the fastest run for a limit), and parts taken from different runs would not add up to one.
  const mid = [...perRun].sort((a, b) => a.modelRunMs - b.modelRunMs)[0]!;
  return {
    modelRunMs: mid.modelRunMs,
    kernelsMs: mid.kernelsMs,
    parts: Object.fromEntries(PARTS.map((p) => [p, mid.parts[p] / 1000])) as Record<Part, number>,
  };
}

const plain = await createSession(decoderFile, sessionOptions);
const hasMask = plain.inputNames.includes(DECODER_IO.decoderAttentionMask);
const profileDir = mkdtempSync(join(tmpdir(), 'blip2-step-'));

interface RowsReport {
  rows: number;
  wallMs: number;
  preallocatedWallMs: number;
  /** onnxruntime wrote the logits into our tensor's memory. */
  preallocatedWrittenInPlace: boolean;
  /** `session.run` handed back our own tensor (else a copy of it). */
  preallocatedReturned: boolean;
  profiledWallMs: number;
  profile: StepProfile;
}
const reports: RowsReport[] = [];
try {
  for (const rows of rowsList) {
    const feeds = feedsFor(rows, hasMask);
    const wall = Math.min(...(await timeRuns(() => plain.run(feeds))));
    // Preallocated outputs: the same tensors every run, as a loop that reuses its buffers would hand them over.
    const outputs = outputsFor(rows);
    const first = await plain.run(feeds, outputs);
    const ours = outputs[DECODER_IO.logits]!.data as Float32Array;
    const returned = first[DECODER_IO.logits]!.data as Float32Array;
    const inPlace = ours.some((v) => v !== 0) && ours.every((v, i) => v === returned[i]);
    const preallocated = Math.min(...(await timeRuns(() => plain.run(feeds, outputs))));

    // A session of its own per row count, so its profile holds only these runs.
    const dir = mkdtempSync(join(profileDir, `rows${rows}-`));
    const profiled = await createSession(decoderFile, {
      ...sessionOptions,
      enableProfiling: true,
      profileFilePrefix: join(dir, 'decoder_'),
    });
    const profiledWall = Math.min(...(await timeRuns(() => profiled.run(feeds))));
    profiled.endProfiling();
    await profiled.release();
    reports.push({
      rows,
      wallMs: wall,
      preallocatedWallMs: preallocated,
      preallocatedWrittenInPlace: inPlace,
      preallocatedReturned: returned.buffer === ours.buffer && returned.byteOffset === ours.byteOffset,
      profiledWallMs: profiledWall,
      profile: readProfile(dir, 2),
    });
  }
} finally {
  await plain.release();
  rmSync(profileDir, { recursive: true, force: true });
}

const fmt = (v: number) => v.toFixed(1);
const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)}%`;
const stepBytes = decoderStepBytes(
  config,
  graphFormat(manifest.graphs.decoder),
  manifest.quantization?.blockSize ?? 32,
);
const tensorsIn = Object.keys(feedsFor(1, hasMask)).length;
const tensorsOut = 1 + 2 * t.numDecoderLayers;
console.log(
  `\n## One decoder step: ${modelDir} (${manifest.dtype}), ${past} cached positions, ${encoderLength} encoder positions, ` +
    `${tensorsIn} tensors in, ${tensorsOut} out, ${(stepBytes / 1e9).toFixed(2)} GB of weights per step; fastest of ${runs} runs\n`,
);
const header = ['', ...reports.map((r) => `${r.rows} row${r.rows > 1 ? 's' : ''}`)];
const row = (label: string, f: (r: RowsReport) => string) => [label, ...reports.map(f)];
console.log(
  table(header, [
    row('session.run from JavaScript', (r) => `${fmt(r.wallMs)} ms`),
    row('× 1 row', (r) => `${(r.wallMs / reports[0]!.wallMs).toFixed(2)}×`),
    row('weights streamed at', (r) => `${(stepBytes / (r.wallMs * 1e6)).toFixed(1)} GB/s`),
    row('profiled session.run (profiler on)', (r) => `${fmt(r.profiledWallMs)} ms`),
    row('  boundary (run − model_run)', (r) => {
      const b = r.profiledWallMs - r.profile.modelRunMs;
      return `${fmt(b)} ms (${pct(b, r.profiledWallMs)})`;
    }),
    row('  onnxruntime overhead (model_run − kernels)', (r) => {
      const o = r.profile.modelRunMs - r.profile.kernelsMs;
      return `${fmt(o)} ms (${pct(o, r.profiledWallMs)})`;
    }),
    ...PARTS.map((p) =>
      row(`  ${p}`, (r) => `${fmt(r.profile.parts[p])} ms (${pct(r.profile.parts[p], r.profiledWallMs)})`),
    ),
    row('preallocated outputs: session.run', (r) => `${fmt(r.preallocatedWallMs)} ms`),
    row('  onnxruntime wrote into our tensors', (r) => (r.preallocatedWrittenInPlace ? 'yes' : 'no')),
    row('  session.run returned our tensors (no copy)', (r) => (r.preallocatedReturned ? 'yes' : 'no')),
  ]),
);
if (values.json) {
  writeFileSync(
    values.json,
    JSON.stringify(
      { model: modelDir, dtype: manifest.dtype, past, encoderLength, runs, stepBytes, reports },
      null,
      2,
    ),
  );
}
