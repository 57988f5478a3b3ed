/**
 * The benchmark scripts are run by hand with flags typed from the docs: `--help` shows the usage, and a mistyped
 * flag says which and shows the usage, with exit code 2 and no stack trace.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/shared.js';

const SCRIPTS = ['run', 'decode-step', 'cold-start', 'ack-latency', 'quality', 'load'];

function bench(script: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', `${script}.ts`), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('benchmark scripts: usage', () => {
  it.each(SCRIPTS)('bench/%s.ts --help prints its usage and exits 0', (script) => {
    const r = bench(script, ['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: npm run bench/m);
  });

  it.each(SCRIPTS)('bench/%s.ts with an unknown flag says so, shows the usage and exits 2', (script) => {
    const r = bench(script, ['--no-such-flag']);
    expect(r.code).toBe(2);
    expect(r.out).toContain("Unknown option '--no-such-flag'");
    expect(r.out).toMatch(/Usage: npm run bench/);
    expect(r.out).not.toMatch(/\n\s+at /);
  });
});
