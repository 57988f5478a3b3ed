/**
 * The demo model: tiny, seeded random weights in the real BLIP-2 FlanT5 layout, converted with the real converter.
 * It lets every command run on a fresh machine without downloading 15.8 GB; its answers are meaningless.
 */

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CONVERTER_VERSION, convertCheckpoint, readManifest } from '../convert/convert.js';
import { writeTinyCheckpoint } from '../convert/synthetic.js';
import { processAlive } from '../util/process-alive.js';

export const DEMO_SEED = 2024;
export const DEMO_NOTICE =
  'Demo model: random weights, so the answers are meaningless. Convert a real BLIP-2 model to get real answers (see models/README.md).';

/**
 * Where the demo model goes by default. In a checkout: `<repository>/models/demo`, independent of the working
 * directory. Installed as a dependency (the package root is inside node_modules, which npm may replace at any
 * time and which may not be writable): the user's cache, `$XDG_CACHE_HOME/blip2-bot/demo` or
 * `~/.cache/blip2-bot/demo`. Pass a dir to ensureDemoModel to choose another place.
 */
export function defaultDemoDir(
  packageRoot: string = PACKAGE_ROOT,
  env: NodeJS.ProcessEnv = process.env,
  home: string = homedir(),
): string {
  if (!packageRoot.split(sep).includes('node_modules')) return join(packageRoot, 'models', 'demo');
  const cache = env.XDG_CACHE_HOME || join(home, '.cache');
  return join(cache, 'blip2-bot', 'demo');
}

const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(from: string): string {
  // src/demo (checkout) or dist/src/demo (package): the first parent with a package.json.
  let dir = from;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export const DEFAULT_DEMO_DIR = defaultDemoDir();

/** Writes the demo model into `dir` unless a finished one is already there; returns the dir. */
export async function ensureDemoModel(
  dir: string = DEFAULT_DEMO_DIR,
  options: { force?: boolean } = {},
): Promise<string> {
  if (!options.force && (await isCurrentDemo(dir))) return dir;
  // Several processes may start on a fresh machine at once (a front and workers): one writes, the others wait for
  // it, so nobody loads a model another is replacing.
  await withLock(`${dir}.lock`, async () => {
    if (!options.force && (await isCurrentDemo(dir))) return;
    const work = await mkdtemp(join(tmpdir(), 'blip2-demo-'));
    try {
      const source = join(work, 'blip2-demo');
      await writeTinyCheckpoint(source, DEMO_SEED);
      await convertCheckpoint(source, dir, { dtype: 'fp32', demo: true, force: true });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
  return dir;
}

/** A demo model from an older converter is rebuilt: it takes a fraction of a second and its graphs may differ. */
async function isCurrentDemo(dir: string): Promise<boolean> {
  const existing = await readManifest(dir);
  return Boolean(existing?.demo && existing.converterVersion === CONVERTER_VERSION);
}

const LOCK_WAIT_MS = 120_000;

/** Runs `fn` holding an exclusive lock file (its content: the holder's pid); a dead holder's lock is taken over. */
async function withLock(lock: string, fn: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  await mkdir(dirname(lock), { recursive: true });
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(await readFile(lock, 'utf8').catch(() => ''));
      if (holder && !processAlive(holder)) {
        await rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `another process (pid ${holder}) has been writing the demo model for 2 minutes: ${lock}`,
        );
      }
      await sleep(100);
    }
  }
  try {
    await fn();
  } finally {
    await rm(lock, { force: true });
  }
}
