/**
 * The demo model: tiny, seeded random weights in the real BLIP-2 FlanT5 layout, converted with the real converter.
 * It lets every command run on a fresh machine without downloading 15.8 GB; its answers are meaningless.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONVERTER_VERSION, convertCheckpoint, readManifest } from '../convert/convert.js';
import { writeTinyCheckpoint } from '../convert/synthetic.js';

export const DEMO_SEED = 2024;
export const DEMO_NOTICE =
  'Demo model: random weights, so the answers are meaningless. Convert a real BLIP-2 model to get real answers (see models/README.md).';

/** `<package root>/models/demo`, independent of the working directory. */
export const DEFAULT_DEMO_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'models',
  'demo',
);

/** Writes the demo model into `dir` unless a finished one is already there; returns the dir. */
export async function ensureDemoModel(
  dir: string = DEFAULT_DEMO_DIR,
  options: { force?: boolean } = {},
): Promise<string> {
  const existing = await readManifest(dir);
  // A demo model from an older converter is rebuilt: it takes a fraction of a second and its graphs may differ.
  if (existing?.demo && existing.converterVersion === CONVERTER_VERSION && !options.force) return dir;
  const work = await mkdtemp(join(tmpdir(), 'blip2-demo-'));
  try {
    const source = join(work, 'blip2-demo');
    await writeTinyCheckpoint(source, DEMO_SEED);
    await convertCheckpoint(source, dir, { dtype: 'fp32', demo: true, force: true });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return dir;
}
