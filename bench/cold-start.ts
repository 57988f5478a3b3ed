/**
 * `npm run bench:cold -- --model <dir> [--variants default,extended,basic,no-prepack,optimized-cache] [--cold]`
 *
 * A fresh process per onnxruntime setting: model load (session creation), first answer (a new picture, 10 greedy
 * tokens) and warm ones (median of three), so the first answer can be read in warm answers. `--cold` drops the page cache
 * before each process (`/proc/sys/vm/drop_caches`; needs root, and slows every other process's next file reads).
 * `optimized-cache` first writes onnxruntime's optimized graphs (as `convert` would) into `<dir>.optimized`, then
 * loads those with graph optimisation off.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ort } from '../src/engine/ort.js';
import { GRAPH_FILES, type GraphName } from '../src/model/graph-io.js';
import { benchArgs, table } from './util.js';

const USAGE =
  'Usage: npm run bench:cold -- --model <model-dir> [--variants default,extended,basic,no-prepack,optimized-cache] [--cold]';
const { values } = benchArgs(
  {
    model: { type: 'string' },
    variants: { type: 'string' },
    cold: { type: 'boolean' },
    child: { type: 'string' },
    'cache-dir': { type: 'string' },
    'write-cache': { type: 'boolean' },
  },
  USAGE,
);

type Variant = 'default' | 'extended' | 'basic' | 'no-prepack' | 'optimized-cache';
const VARIANTS: Variant[] = ['default', 'extended', 'basic', 'no-prepack', 'optimized-cache'];

interface ChildReport {
  variant: string;
  loadMs: number;
  firstAnswerMs: number;
  warmAnswerMs: number;
  peakRssBytes: number;
}

function optionsFor(
  variant: Variant,
  cacheDir: string | undefined,
  writeCache: boolean,
): {
  sessionOptions?: (graph: GraphName) => ort.InferenceSession.SessionOptions;
  graphFile?: (graph: GraphName, file: string) => string;
} {
  switch (variant) {
    case 'default':
      return {};
    case 'extended':
      return { sessionOptions: () => ({ graphOptimizationLevel: 'extended' }) };
    case 'basic':
      return { sessionOptions: () => ({ graphOptimizationLevel: 'basic' }) };
    case 'no-prepack':
      return { sessionOptions: () => ({ extra: { session: { disable_prepacking: '1' } } }) };
    case 'optimized-cache': {
      if (!cacheDir) throw new Error('optimized-cache needs --cache-dir');
      if (writeCache) {
        return {
          sessionOptions: (graph) => ({
            optimizedModelFilePath: join(cacheDir, GRAPH_FILES[graph]),
            extra: {
              session: {
                optimized_model_external_initializers_file_name: `${GRAPH_FILES[graph]}.data`,
                optimized_model_external_initializers_min_size_in_bytes: '1024',
              },
            },
          }),
        };
      }
      return {
        sessionOptions: () => ({ graphOptimizationLevel: 'disabled' }),
        graphFile: (graph) => join(cacheDir, GRAPH_FILES[graph]),
      };
    }
  }
}

async function child(model: string, variant: Variant): Promise<void> {
  const started = performance.now();
  const { Blip2Engine } = await import('../src/engine/engine.js');
  const sharp = (await import('sharp')).default;
  const engine = await Blip2Engine.load(model, {
    store: { kind: 'memory' },
    requestTimeoutMs: 0,
    ...optionsFor(variant, values['cache-dir'], values['write-cache'] ?? false),
  });
  const loadMs = performance.now() - started;
  const picture = async (seed: number) => {
    const raw = Buffer.alloc(64 * 48 * 3, seed);
    return new Uint8Array(
      await sharp(raw, { raw: { width: 64, height: 48, channels: 3 } })
        .png()
        .toBuffer(),
    );
  };
  const ask = async (seed: number) =>
    engine.generate({
      image: await picture(seed),
      question: 'what is in the picture?',
      options: { maxNewTokens: 10, minNewTokens: 10, ignoreEos: true },
    });
  await ask(1);
  const firstAnswerMs = performance.now() - started;
  // The median of three warm answers: one alone swings with the machine.
  const warmTimes: number[] = [];
  for (const seed of [2, 3, 4]) {
    const warm = performance.now();
    await ask(seed);
    warmTimes.push(performance.now() - warm);
  }
  const warmAnswerMs = warmTimes.sort((a, b) => a - b)[1]!;
  await engine.close();
  const report: ChildReport = {
    variant,
    loadMs,
    firstAnswerMs,
    warmAnswerMs,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  console.log(JSON.stringify(report));
}

function dropCaches(): boolean {
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

function spawnChild(model: string, variant: Variant, extra: string[] = []): ChildReport {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', import.meta.filename, '--child', variant, '--model', model, ...extra],
    { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as ChildReport;
}

if (values.child) {
  await child(values.model!, values.child as Variant);
} else {
  if (!values.model) {
    console.error(USAGE);
    process.exit(2);
  }
  const model = values.model;
  const variants = (values.variants?.split(',') ?? VARIANTS) as Variant[];
  for (const v of variants) {
    if (!VARIANTS.includes(v)) {
      console.error(`bench:cold: unknown setting ${v} (one of ${VARIANTS.join(', ')})`);
      process.exit(2);
    }
  }
  const cacheDir = `${model.replace(/\/$/, '')}.optimized`;
  const rows: string[][] = [];
  let cold = values.cold ?? false;
  for (const variant of variants) {
    const extra: string[] = [];
    if (variant === 'optimized-cache') {
      extra.push('--cache-dir', cacheDir);
      if (!existsSync(join(cacheDir, GRAPH_FILES.decoder))) {
        mkdirSync(cacheDir, { recursive: true });
        console.error(`writing onnxruntime's optimized graphs to ${cacheDir} …`);
        spawnChild(model, variant, [...extra, '--write-cache']);
      }
    }
    if (cold && !dropCaches()) {
      console.error(
        'cannot write /proc/sys/vm/drop_caches (not root?): measuring with a warm page cache only',
      );
      cold = false;
    }
    console.error(`${variant}${cold ? ' (cold page cache)' : ''} …`);
    const r = spawnChild(model, variant, extra);
    rows.push([
      `${variant}${cold ? ', cold cache' : ''}`,
      r.loadMs.toFixed(0),
      r.firstAnswerMs.toFixed(0),
      r.warmAnswerMs.toFixed(0),
      (r.firstAnswerMs / r.warmAnswerMs).toFixed(1),
      (r.peakRssBytes / 1e9).toFixed(2),
    ]);
  }
  console.log(`Fresh process per setting, ${basename(model)}:\n`);
  console.log(
    table(
      [
        'setting',
        'load (ms)',
        'first answer, load included (ms)',
        'warm answer (ms)',
        'first / warm',
        'peak RSS (GB)',
      ],
      rows,
    ),
  );
}
