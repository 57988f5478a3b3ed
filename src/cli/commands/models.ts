import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { writeSyntheticCheckpoint } from '../../convert/synthetic.js';
import { DEFAULT_DEMO_DIR, DEMO_NOTICE, ensureDemoModel } from '../../demo/demo-model.js';
import { UserFacingError } from '../../errors.js';
import { optionalInt, parse, requireString, UsageError } from '../args.js';
import { ProgressBar, withSpinner } from '../progress.js';

export const MODELS_USAGE = `Usage: blip2-bot models demo [--out <dir>] [--force]
       blip2-bot models synth --config <config.json | blip2-flan-t5-xl> --out <hf-dir> [--seed N]

  demo    write the seeded tiny demo model (random weights, converted with the real converter) so every command
          works on a fresh machine; its answers are meaningless. Default --out: models/demo
  synth   write a Hugging Face-format checkpoint with seeded random weights of the shapes a config.json implies
          (--config blip2-flan-t5-xl: the real Salesforce/blip2-flan-t5-xl config, shipped in assets/configs;
          15.8 GB), streamed to disk, for benchmarks`;

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
    const bar = new ProgressBar();
    const r = await writeSyntheticCheckpoint(out, {
      config,
      seed: optionalInt(v.seed, '--seed') ?? 0,
      onProgress: (p) => bar.update(p.bytesWritten / p.totalBytes, `${(p.bytesWritten / 1e9).toFixed(2)} GB`),
    });
    bar.done();
    console.log(
      `Wrote ${r.dir}: ${r.tensors} tensors, ${r.parameters.toLocaleString('en-US')} parameters, ${(r.bytes / 1e9).toFixed(2)} GB in ${r.seconds.toFixed(1)} s`,
    );
    return 0;
  }
  if (sub === undefined || sub === '--help' || sub === '-h') {
    console.log(MODELS_USAGE);
    return sub ? 0 : 2;
  }
  throw new UsageError(`unknown models subcommand "${sub}"\n\n${MODELS_USAGE}`);
}
