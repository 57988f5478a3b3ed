import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { formatReport } from '../../calibrate/report.js';
import { writeSyntheticCheckpoint } from '../../convert/synthetic.js';
import { DEFAULT_DEMO_DIR, DEMO_NOTICE, ensureDemoModel } from '../../demo/demo-model.js';
import { UserFacingError } from '../../errors.js';
import { readManifest } from '../../model/manifest.js';
import { optionalInt, parse, requireString, UsageError } from '../args.js';
import { ProgressBar, withSpinner } from '../progress.js';

export const MODELS_USAGE = `Usage: blip2-bot models pull <repo-id> [--revision main] [--dtype auto|fp32|int8|int4|mixed]
                          [--out models/<name>] [--keep-source]
       blip2-bot models demo [--out <dir>] [--force]
       blip2-bot models synth --config <config.json | blip2-flan-t5-xl> --out <hf-dir> [--seed N] [--dtype fp32|bf16]
       blip2-bot models info <model-dir>

  pull    download a BLIP-2 checkpoint from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN) and convert it, no Python;
          resumable and checksum-verified. Default --out: models/<name>. blip2-bot models pull --help for more
  demo    write the seeded tiny demo model (random weights, converted with the real converter) so every command
          works on a fresh machine; its answers are meaningless. Default --out: models/demo
  synth   write a Hugging Face-format checkpoint with seeded random weights of the shapes a config.json implies
          (e.g. --config blip2-flan-t5-xl: the real Salesforce/blip2-flan-t5-xl config, shipped in
          assets/configs, 15.8 GB; or blip2-opt-2.7b's config, 15.0 GB), streamed to disk, for benchmarks;
          --dtype bf16 halves the size (default fp32)
  info    what a converted model dir holds: source, sizes, each graph's kernel mix and, for --dtype auto, the
          fidelity report written at conversion (activation outliers, agreement with fp32, warnings)`;

/** `--config <name>`: real Hugging Face configs shipped with the package, so `synth` needs no download. */
const CONFIG_PRESETS: Record<string, string> = {
  'blip2-flan-t5-xl': fileURLToPath(
    new URL('../../../assets/configs/blip2-flan-t5-xl.json', import.meta.url),
  ),
};

/** The preset's file when `value` names one (from src/cli/commands or dist/src/cli/commands alike). */
export function configPath(value: string): string {
  const preset = CONFIG_PRESETS[value];
  if (!preset) return value;
  if (existsSync(preset)) return preset;
  // dist/src/cli/commands is one level deeper than src/cli/commands.
  return fileURLToPath(new URL(`../../../../assets/configs/${value}.json`, import.meta.url));
}

async function readConfigJson(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new UserFacingError('config_file', `${path} is not valid JSON: ${(e as Error).message}`);
  }
}

export async function modelsCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'pull') return (await import('./models-pull.js')).modelsPullCommand(rest);
  if (sub === 'demo') {
    const v = parse(
      rest,
      { out: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      MODELS_USAGE,
    );
    if (v.help) {
      console.log(MODELS_USAGE);
      return 0;
    }
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
        help: { type: 'boolean', short: 'h' },
      },
      MODELS_USAGE,
    );
    if (v.help) {
      console.log(MODELS_USAGE);
      return 0;
    }
    const config = await readConfigJson(configPath(requireString(v.config, '--config', MODELS_USAGE)));
    const out = requireString(v.out, '--out', MODELS_USAGE);
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
