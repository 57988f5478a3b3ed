import { readFile } from 'node:fs/promises';
import { formatReport } from '../../calibrate/report.js';
import { readManifest } from '../../convert/convert.js';
import { writeSyntheticCheckpoint } from '../../convert/synthetic.js';
import { DEFAULT_DEMO_DIR, DEMO_NOTICE, ensureDemoModel } from '../../model/demo.js';
import { optionalInt, parse, requireString, UsageError } from '../args.js';
import { ProgressBar, withSpinner } from '../progress.js';

export const MODELS_USAGE = `Usage: blip2-bot models pull <repo-id> [--revision main] [--dtype auto|fp32|int8|int4|mixed]
                          [--out models/<name>] [--keep-source]
       blip2-bot models demo [--out <dir>] [--force]
       blip2-bot models synth --config <config.json> --out <hf-dir> [--seed N] [--dtype fp32|bf16]
       blip2-bot models info <model-dir>

  pull    download a BLIP-2 checkpoint from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN) and convert it, no Python;
          resumable and checksum-verified. Default --out: models/<name>. blip2-bot models pull --help for more
  demo    write the seeded tiny demo model (random weights, converted with the real converter) so every command
          works on a fresh machine; its answers are meaningless. Default --out: models/demo
  synth   write a Hugging Face-format checkpoint with seeded random weights of the shapes a config.json implies
          (e.g. the real Salesforce/blip2-flan-t5-xl config, 15.8 GB, or blip2-opt-2.7b, 15.0 GB), streamed to
          disk, for benchmarks; --dtype bf16 halves the size (default fp32)
  info    what a converted model dir holds: source, sizes, each graph's kernel mix and, for --dtype auto, the
          fidelity report written at conversion (activation outliers, agreement with fp32, warnings)`;

export async function modelsCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'pull') return (await import('./models-pull.js')).modelsPullCommand(rest);
  if (sub === 'demo') {
    const v = parse(rest, { out: { type: 'string' }, force: { type: 'boolean' } }, MODELS_USAGE);
    const dir = await withSpinner('Writing the demo model', () =>
      ensureDemoModel(v.out ?? DEFAULT_DEMO_DIR, { force: v.force ?? false }),
    );
    console.log(`Demo model ready in ${dir}\n${DEMO_NOTICE}`);
    return 0;
  }
  if (sub === 'synth') {
    const v = parse(
      rest,
      {
        config: { type: 'string' },
        out: { type: 'string' },
        seed: { type: 'string' },
        dtype: { type: 'string' },
      },
      MODELS_USAGE,
    );
    const configPath = requireString(v.config, '--config', MODELS_USAGE);
    const out = requireString(v.out, '--out', MODELS_USAGE);
    const config = JSON.parse(await readFile(configPath, 'utf8')) as unknown;
    const dtypeName = v.dtype ?? 'fp32';
    if (dtypeName !== 'fp32' && dtypeName !== 'bf16') {
      throw new UsageError(`--dtype must be fp32 or bf16, got "${dtypeName}"\n\n${MODELS_USAGE}`);
    }
    const bar = new ProgressBar();
    const r = await writeSyntheticCheckpoint(out, {
      config,
      seed: optionalInt(v.seed, '--seed') ?? 0,
      dtype: dtypeName === 'bf16' ? 'BF16' : 'F32',
      onProgress: (p) => bar.update(p.bytesWritten / p.totalBytes, `${(p.bytesWritten / 1e9).toFixed(2)} GB`),
    });
    bar.done();
    console.log(
      `Wrote ${r.dir}: ${r.tensors} tensors, ${r.parameters.toLocaleString('en-US')} parameters, ${(r.bytes / 1e9).toFixed(2)} GB in ${r.seconds.toFixed(1)} s`,
    );
    return 0;
  }
  if (sub === 'info') {
    const [dir, ...extra] = rest;
    if (!dir || dir.startsWith('-') || extra.length > 0) {
      throw new UsageError(`models info takes one model dir\n\n${MODELS_USAGE}`);
    }
    return modelsInfo(dir);
  }
  if (sub === undefined || sub === '--help' || sub === '-h') {
    console.log(MODELS_USAGE);
    return sub ? 0 : 2;
  }
  throw new UsageError(`unknown models subcommand "${sub}"\n\n${MODELS_USAGE}`);
}

async function modelsInfo(dir: string): Promise<number> {
  const manifest = await readManifest(dir);
  if (!manifest) {
    console.error(
      `blip2-bot models info: ${dir} does not hold a converted model (no complete manifest.json)`,
    );
    return 1;
  }
  const bytes = Object.values(manifest.graphs).reduce((n, g) => n + g.bytes, 0);
  console.log(
    [
      `${dir}: ${manifest.modelId}${manifest.demo ? ' (demo model: random weights)' : ''}`,
      `  converted   ${manifest.createdAt} by converter ${manifest.converterVersion} from ${manifest.source.dir}`,
      `  size        ${(bytes / 1e9).toFixed(2)} GB in ${Object.keys(manifest.graphs).length} graphs`,
      `  parameters  ${manifest.stats.parameters.toLocaleString('en-US')}`,
      '',
      ...formatReport(manifest),
    ].join('\n'),
  );
  return 0;
}
