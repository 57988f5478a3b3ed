/**
 * `npm run bench -- --model <dir> [--model <dir> ...] [--runs 3] [--tokens 10] [--concurrency 1,4,8|none]
 *  [--json out.json] [--svg out.svg]`, or `npm run bench -- --from out.json --svg out.svg` to redraw a saved run.
 *
 * Per model (one fresh process each): load time, first answer of a fresh process, stage latencies for a new image
 * and for a follow-up on a cached image (greedy and 5 beams, fixed decode length), peak RSS, and several people
 * at once (N simultaneous follow-ups and new pictures, 5 beams: until all are answered, p50/p95). Then the
 * machine's limits measured in the same run (GEMM throughput per kernel kind, weight streaming) and the share of
 * its limit each stage reaches. Medians over `--runs`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { resolveBlip2Config } from '../src/model/config.js';
import type { WeightFormat } from '../src/model/graph-io.js';
import { readManifest } from '../src/model/manifest.js';
import { graphFormat } from '../src/model/precision.js';
import { type KernelKind, type KernelResult, measureKernel } from './kernels.js';
import { HF_BF16, stageBarsSvg } from './svg.js';
import { benchArgs, table } from './util.js';
import { decoderStepBytes, encoderFlops, visionFlops } from './work.js';
import type { StageTimes, WorkerReport } from './worker.js';

const USAGE =
  'Usage: npm run bench -- --model <model-dir> [--model <dir> ...] [--runs 3] [--tokens 10] [--concurrency 1,4,8|none]\n' +
  '                        [--threads N] [--skip-kernels] [--profile] [--json out.json] [--svg out.svg]\n' +
  '       npm run bench -- --from out.json --svg out.svg      (redraw the picture of a saved run)';
const { values } = benchArgs(
  {
    model: { type: 'string', multiple: true },
    runs: { type: 'string' },
    tokens: { type: 'string' },
    json: { type: 'string' },
    svg: { type: 'string' },
    from: { type: 'string' },
    concurrency: { type: 'string' },
    threads: { type: 'string' },
    'skip-kernels': { type: 'boolean' },
    profile: { type: 'boolean' },
  },
  USAGE,
);
if (!values.model?.length && !values.from) {
  console.error(USAGE);
  process.exit(2);
}
interface SavedRun {
  machine: string;
  tokens: number;
  runs: number;
  date?: string;
  reports: WorkerReport[];
}
const saved = values.from ? (JSON.parse(readFileSync(values.from, 'utf8')) as SavedRun) : undefined;
const runs = saved ? String(saved.runs) : (values.runs ?? '3');
const tokens = saved ? saved.tokens : Number(values.tokens ?? 10);
const here = import.meta.dirname;

const KERNEL_OF: Record<WeightFormat, KernelKind> = {
  fp32: 'fp32',
  'int8-dynamic': 'dq8',
  int8: 'nbits8',
  int4: 'nbits4',
};
const ms = (v: number) => v.toFixed(0);
const fmtGB = (b: number) => (b / 1e9).toFixed(2);

function workerRun(model: string): WorkerReport {
  const args = [
    '--import',
    'tsx',
    join(here, 'worker.ts'),
    '--model',
    model,
    '--runs',
    runs,
    '--tokens',
    String(tokens),
  ];
  if (values.threads) args.push('--threads', values.threads);
  if (values.profile) args.push('--profile');
  if (values.concurrency) args.push('--concurrency', values.concurrency);
  const out = execFileSync(process.execPath, args, {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out.trim().split('\n').pop()!) as WorkerReport;
}

/** Single-thread memcpy of a buffer far larger than the caches: an upper bound on weight streaming. */
function memcpyGBps(): number {
  const size = 512 * 1024 * 1024;
  const a = Buffer.alloc(size, 1);
  const b = Buffer.alloc(size);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    a.copy(b);
    times.push(performance.now() - t);
  }
  times.sort((x, y) => x - y);
  return (2 * size) / (times[2]! * 1e6); // read + write
}

const reports: WorkerReport[] = saved ? saved.reports : [];
for (const model of saved ? [] : (values.model ?? [])) {
  console.error(`measuring ${model} …`);
  reports.push(workerRun(model));
}

const lines: string[] = [];
const machine = saved?.machine ?? `${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}`;
const date = saved?.date ?? new Date().toISOString().slice(0, 10);
lines.push(`Machine: ${machine}; ${date}; ${tokens} new tokens (EOS ignored), medians of ${runs} runs.`);

for (const r of reports) {
  const s = r.scenarios;
  const col = (f: (t: StageTimes) => number) =>
    [s.newGreedy, s.newBeam5, s.followGreedy, s.followBeam5].map((t) => ms(f(t)));
  lines.push('', `### ${r.dtype} — ${r.model}`, '');
  lines.push(
    `model load ${ms(r.loadMs)} ms · first answer of a fresh process (load included) ${ms(r.firstAnswerMs)} ms · peak RSS ${fmtGB(r.peakRssBytes)} GB`,
    '',
  );
  lines.push(
    table(
      ['ms', 'new image, greedy', 'new image, 5 beams', 'follow-up, greedy', 'follow-up, 5 beams'],
      [
        ['preprocess', ...col((t) => t.preprocessMs)],
        ['vision', ...col((t) => t.visionMs)],
        ['Q-Former', ...col((t) => t.qformerMs)],
        ['prompt (T5 encoder + cross K/V, or OPT prefill)', ...col((t) => t.encoderMs)],
        ['decode per token', ...col((t) => t.decodeMsPerToken)],
        [`total, ${tokens} tokens`, ...col((t) => t.totalMs)],
      ],
    ),
  );
  if (r.concurrency?.length) {
    const one = (kind: string) =>
      r.concurrency!.find((c) => c.kind === kind && c.requests === 1)?.allAnsweredMs;
    lines.push(
      '',
      `Several people at once, ${r.concurrency[0]!.numBeams} beams (sent together; decode steps ${r.mergedDecode ? 'merged into one batch' : 'one request at a time: this decoder has no decoder_attention_mask, convert it again'}); peak RSS ${r.peakRssConcurrentBytes ? fmtGB(r.peakRssConcurrentBytes) : '?'} GB:`,
      '',
    );
    lines.push(
      table(
        [
          'requests',
          'until all answered (ms)',
          '× one answer',
          'p50 (ms)',
          'p95 (ms)',
          'decoder rows per step',
        ],
        r.concurrency.map((c) => {
          const base = one(c.kind);
          return [
            `${c.requests} ${c.kind}${c.requests > 1 ? 's' : ''}`,
            ms(c.allAnsweredMs),
            base ? `${(c.allAnsweredMs / base).toFixed(2)}×` : '–',
            ms(c.p50Ms),
            ms(c.p95Ms),
            c.rowsPerStep.toFixed(1),
          ];
        }),
      ),
    );
  }
  if (r.decoderStepByRows?.length) {
    const one = r.decoderStepByRows[0]!.ms;
    lines.push('', 'One decoder run by batch rows (10 cached positions, 43 encoder positions):', '');
    lines.push(
      table(
        ['rows', 'ms per step', '× 1 row', 'ms per row'],
        r.decoderStepByRows.map((d) => [
          d.rows,
          d.ms.toFixed(1),
          `${(d.ms / one).toFixed(2)}×`,
          (d.ms / d.rows).toFixed(1),
        ]),
      ),
    );
  }
  if (r.profile) {
    lines.push('', `onnxruntime profile, top operator types per graph (whole run):`, '');
    lines.push(
      table(
        ['graph', 'operator', 'ms', 'share of graph'],
        r.profile.map((p) => [p.graph, p.op, p.ms.toFixed(0), `${(100 * p.share).toFixed(0)}%`]),
      ),
    );
  }
}

const json: Record<string, unknown> = { machine, date, tokens, runs: Number(runs), reports };
if (!values['skip-kernels'] && !saved) {
  const shapes: [string, number, number, number][] = [
    ['vision MLP (257 rows)', 257, 1408, 6144],
    ['T5 encoder FFN (43 rows)', 43, 2048, 5120],
    ['decoder step (1 row)', 1, 2048, 5120],
    ['decoder, 5 beams (5 rows)', 5, 2048, 5120],
    // Eight people with 5 beams each in one merged step.
    ['merged decoder step (40 rows)', 40, 2048, 5120],
  ];
  const kinds: KernelKind[] = ['fp32', 'dq8', 'nbits8', 'nbits4'];
  const kernels: (KernelResult & { label: string })[] = [];
  for (const [label, m, k, n] of shapes) {
    for (const kind of kinds) {
      kernels.push({ label, ...(await measureKernel(kind, m, k, n, { blockSize: 128, accuracyLevel: 4 })) });
    }
  }
  // T5's wo never quantises its activations (docs/precision.md): what fp32 activations cost at its shapes.
  const woShapes: [string, number][] = [
    ['T5 wo, encoder (43 rows)', 43],
    ['T5 wo, decoder step (1 row)', 1],
    ['T5 wo, 5 beams (5 rows)', 5],
  ];
  const woRows: string[][] = [];
  for (const [label, m] of woShapes) {
    const a8 = await measureKernel('nbits4', m, 5120, 2048, { blockSize: 128, accuracyLevel: 4 });
    const a32 = await measureKernel('nbits4', m, 5120, 2048, { blockSize: 128, accuracyLevel: 1 });
    woRows.push([
      `${label} ${m}×5120×2048`,
      a8.ms.toFixed(2),
      a32.ms.toFixed(2),
      `${(a32.ms / a8.ms).toFixed(1)}×`,
    ]);
  }
  // Weights far larger than the caches, one row: what a decoder step can stream at best.
  const stream4 = await measureKernel('nbits4', 1, 8192, 16384, {
    blockSize: 128,
    accuracyLevel: 4,
    repeats: 7,
  });
  const stream8 = await measureKernel('nbits8', 1, 8192, 16384, {
    blockSize: 128,
    accuracyLevel: 4,
    repeats: 7,
  });
  const copy = memcpyGBps();
  const streaming = stream4.weightGBps > stream8.weightGBps ? stream4 : stream8;
  lines.push('', '### Machine limits (same run)', '');
  lines.push(
    table(
      ['shape', 'kernel', 'ms', 'GOP/s'],
      kernels.map((k) => [`${k.label} ${k.m}×${k.k}×${k.n}`, k.kind, k.ms.toFixed(2), k.gops.toFixed(0)]),
    ),
  );
  lines.push(
    '',
    `Weight streaming, one row over a 134M-weight matrix (1×8192×16384): int4 MatMulNBits ${stream4.weightGBps.toFixed(1)} GB/s, int8 ${stream8.weightGBps.toFixed(1)} GB/s; memcpy ${copy.toFixed(1)} GB/s. GEMM limits are the fastest of several runs of one matrix.`,
  );

  const limit = (kind: KernelKind, rows: number) =>
    kernels.find((k) => k.kind === kind && k.m === rows)?.gops ?? Number.NaN;
  const shareRows: string[][] = [];
  for (const r of reports) {
    const manifest = await readManifest(r.model);
    if (!manifest) continue;
    const config = resolveBlip2Config(manifest.source.config);
    const block = manifest.quantization?.blockSize ?? 32;
    const g = manifest.graphs;
    // OPT has one language-model graph for the prompt and the steps.
    const lmGraph = g.decoder ?? g.opt;
    const promptGraph = g.encoder ?? g.opt;
    if (!g.vision || !lmGraph || !promptGraph) continue;
    const s = r.scenarios.newGreedy;
    const vGops = visionFlops(config) / (s.visionMs * 1e6);
    // The bench prompt is 11 tokens; OPT's bos makes it 12.
    const promptTokens = config.numQueryTokens + (config.languageModel === 'opt' ? 12 : 11);
    const eGops = encoderFlops(config, promptTokens) / (s.encoderMs * 1e6);
    const dBytes = decoderStepBytes(config, graphFormat(lmGraph), block);
    const dGBps = dBytes / (s.decodeMsPerToken * 1e6);
    const vLimit = limit(KERNEL_OF[graphFormat(g.vision)], 257);
    const eLimit = limit(KERNEL_OF[graphFormat(promptGraph)], 43);
    shareRows.push(
      [
        r.dtype,
        'vision',
        `${(visionFlops(config) / 1e9).toFixed(0)} GFLOP`,
        `${vGops.toFixed(0)} GOP/s`,
        `${vLimit.toFixed(0)} GOP/s (${KERNEL_OF[graphFormat(g.vision)]})`,
        `${((100 * vGops) / vLimit).toFixed(0)}%`,
      ],
      [
        r.dtype,
        config.languageModel === 'opt' ? 'OPT prefill' : 'T5 encoder',
        `${(encoderFlops(config, promptTokens) / 1e9).toFixed(0)} GFLOP`,
        `${eGops.toFixed(0)} GOP/s`,
        `${eLimit.toFixed(0)} GOP/s (${KERNEL_OF[graphFormat(promptGraph)]})`,
        `${((100 * eGops) / eLimit).toFixed(0)}%`,
      ],
      [
        r.dtype,
        'decode step',
        `${(dBytes / 1e9).toFixed(2)} GB weights`,
        `${dGBps.toFixed(1)} GB/s`,
        `${streaming.weightGBps.toFixed(1)} GB/s (streaming)`,
        `${((100 * dGBps) / streaming.weightGBps).toFixed(0)}%`,
      ],
    );
  }
  lines.push('', '### nbits4 with int8 (a8) vs fp32 (a32) activations at the T5 wo shapes (same run)', '');
  lines.push(table(['shape', 'a8 ms', 'a32 ms', 'a32 / a8'], woRows));
  lines.push('', '### Share of the machine limit (new image, greedy)', '');
  lines.push(table(['model', 'stage', 'work', 'achieved', 'limit', 'share'], shareRows));
  json.kernels = kernels;
  json.streamingGBps = { int4: stream4.weightGBps, int8: stream8.weightGBps };
  json.memcpyGBps = copy;
}

console.log(lines.join('\n'));
if (values.json && !saved) writeFileSync(values.json, `${JSON.stringify(json, null, 2)}\n`);
if (values.svg) {
  const streaming =
    (saved as { streamingGBps?: { int4: number } } | undefined)?.streamingGBps ?? json.streamingGBps;
  const speed = streaming
    ? `; int4 weight streaming in this run ${(streaming as { int4: number }).int4.toFixed(1)} GB/s (29.4 on a quiet day)`
    : '';
  const caption = `${date}; ${tokens} new tokens, medians of ${runs} runs${speed}\npeer: issue 13's figures (this machine on a quiet day); goals: issue 13's`;
  writeFileSync(values.svg, stageBarsSvg(reports, HF_BF16, caption));
  console.error(`wrote ${values.svg}`);
}
