import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { readManifest } from '../../src/model/manifest.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

describe('the demo model', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('is written once when several processes ask for it at the same moment (a front and workers starting)', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'blip2-demo-race-'));
    dirs.push(parent);
    const dir = join(parent, 'demo');
    const script = `import { ensureDemoModel } from './src/demo/demo-model.ts'; await ensureDemoModel(${JSON.stringify(dir)}); console.log('ok');`;
    // Before the lock, one process's clean-up removed another's half-written dir (ENOENT) or swapped the model
    // out from under a process that was loading it.
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          cwd: ROOT,
          encoding: 'utf8',
        }),
      ),
    );
    for (const r of results) expect(r.stdout.trim()).toBe('ok');
    const manifest = await readManifest(dir);
    expect(manifest?.demo).toBe(true);
    expect(manifest?.complete).toBe(true);
    // Nothing left beside it: no partial dirs, no lock.
    expect(await readdir(parent)).toEqual(['demo']);
  }, 120_000);
});
