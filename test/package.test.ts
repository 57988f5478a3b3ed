/** The published package and the install: what users get from `npm install blip2-bot` and from a clone. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultDemoDir } from '../src/demo/demo-model.js';
import { ROOT } from './helpers/shared.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  allowScripts: Record<string, boolean>;
};

function npm(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('npm', args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('install and package', () => {
  // npm versions with package.json's allowScripts policy (npm deny-scripts) skip a denied dependency's install
  // scripts; older ones run them, and the README says to set ONNXRUNTIME_NODE_INSTALL=skip there.
  const npmHasAllowScripts = npm(['deny-scripts', '--help']).code === 0;

  it.skipIf(!npmHasAllowScripts)(
    `a plain clone never runs onnxruntime-node's CUDA download, and npm warns about nothing${npmHasAllowScripts ? '' : ' (this npm has no allowScripts; skipping)'}`,
    () => {
      expect(existsSync(join(ROOT, '.npmrc')), 'no .npmrc key npm does not know').toBe(false);
      expect(pkg.allowScripts['onnxruntime-node']).toBe(false);
      // A value onnxruntime-node's install script rejects at once, offline: had npm run the script, this fails.
      const r = npm(['rebuild', 'onnxruntime-node', '--foreground-scripts'], {
        ONNXRUNTIME_NODE_INSTALL: 'not-a-manifest',
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/warn/i);
    },
  );

  it('CI installs with the CUDA download skipped on any npm (item 14)', () => {
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    const skip = ci.indexOf('export ONNXRUNTIME_NODE_INSTALL=skip');
    expect(skip).toBeGreaterThan(-1);
    expect(skip).toBeLessThan(ci.indexOf('npm ci'));
  });

  it('ships the licence, .env.example and the Slack manifest, and no source maps (item 18)', () => {
    const r = npm(['pack', '--dry-run', '--json', '--ignore-scripts']);
    expect(r.code, r.stderr).toBe(0);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const needed of ['LICENSE', '.env.example', 'adapters/slack/manifest.yaml', 'bin/blip2-bot.js']) {
      expect(files).toContain(needed);
    }
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    const build = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules/typescript/bin/tsc'), '--showConfig', '-p', 'tsconfig.build.json'],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    const options = (JSON.parse(build.stdout) as { compilerOptions: Record<string, unknown> })
      .compilerOptions;
    // Maps are only worth shipping with the sources they point at.
    expect(options.sourceMap === true && options.inlineSources !== true).toBe(false);
  });

  it('tsx is a development tool only (item 18)', () => {
    expect(pkg.dependencies.tsx).toBeUndefined();
    expect(pkg.devDependencies.tsx).toBeDefined();
  });

  it('the demo model goes to the user cache when the package is installed as a dependency (item 18)', () => {
    expect(defaultDemoDir('/home/a/bot', {}, '/home/a')).toBe('/home/a/bot/models/demo');
    expect(defaultDemoDir('/srv/app/node_modules/blip2-bot', {}, '/home/a')).toBe(
      '/home/a/.cache/blip2-bot/demo',
    );
    expect(
      defaultDemoDir('/srv/app/node_modules/blip2-bot', { XDG_CACHE_HOME: '/var/cache/u' }, '/home/a'),
    ).toBe('/var/cache/u/blip2-bot/demo');
  });
});
