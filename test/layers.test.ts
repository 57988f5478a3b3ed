/**
 * The layers run one way (docs/ARCHITECTURE.md): model contract ← convert; model contract ← engine ← chat core ←
 * config ← adapters ← cli. Each rule names the folders a layer must not import from; the test reads every import
 * of every source file, so a new file breaking the direction fails here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/shared.js';

/** Top-level areas, by path prefix relative to the repository root. */
const AREAS = [
  'src/errors.ts',
  'src/util',
  'src/model',
  'src/convert',
  'src/demo',
  'src/calibrate',
  'src/hub',
  'src/storage',
  'src/engine',
  'src/scale',
  'src/chat',
  'src/config',
  'src/cli',
  'src/index.ts',
  'adapters',
  'bench',
] as const;
type Area = (typeof AREAS)[number];

const BASE: Area[] = ['src/errors.ts', 'src/util'];
/** What each area may import (besides itself and node/npm packages). */
const ALLOWED: Record<Area, Area[]> = {
  'src/errors.ts': [],
  'src/util': ['src/errors.ts'],
  'src/model': BASE,
  'src/convert': [...BASE, 'src/model'],
  'src/demo': [...BASE, 'src/model', 'src/convert'],
  // Calibration runs the converter and engine sessions: above both; only src/cli and src/index.ts import it.
  'src/calibrate': [...BASE, 'src/model', 'src/convert', 'src/engine', 'src/storage'],
  // The Hub client for `models pull`: only src/cli uses it.
  'src/hub': [...BASE, 'src/model'],
  'src/storage': BASE,
  'src/engine': [...BASE, 'src/model', 'src/storage'],
  // Scale-out (BullMQ, Redis): an ImageQuestionEngine for fronts, the worker's job loop, and the chat core's
  // shared state; the chat core never knows whether its engine is in this process or behind a queue.
  'src/scale': [...BASE, 'src/engine', 'src/storage', 'src/chat'],
  'src/chat': [...BASE, 'src/engine'],
  // config reads the environment once and builds each layer's settings, so it sits above them.
  'src/config': [...BASE, 'src/chat', 'src/engine', 'src/storage'],
  adapters: [...BASE, 'src/chat', 'src/config'],
  'src/cli': [...AREAS.filter((a) => a !== 'src/cli' && a !== 'src/index.ts' && a !== 'bench')],
  'src/index.ts': AREAS.filter(
    (a) => a !== 'src/cli' && a !== 'bench' && a !== 'adapters' && a !== 'src/hub' && a !== 'src/scale',
  ),
  // Benchmarks build kernel graphs with the converter's builder and run the engine: a tool above both.
  bench: [...BASE, 'src/model', 'src/convert', 'src/engine', 'src/demo', 'src/storage', 'src/scale'],
};

function areaOf(path: string): Area | undefined {
  const rel = relative(ROOT, path);
  return AREAS.find((a) => rel === a || rel.startsWith(`${a}/`));
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.ts$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

describe('layers', () => {
  it('every import runs down the layers', () => {
    const violations: string[] = [];
    for (const file of [
      ...sources(join(ROOT, 'src')),
      ...sources(join(ROOT, 'adapters')),
      ...sources(join(ROOT, 'bench')),
    ]) {
      const from = areaOf(file);
      if (!from) {
        violations.push(`${relative(ROOT, file)} is in no layer (add it to test/layers.test.ts)`);
        continue;
      }
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT)) {
        const target = resolve(dirname(file), (m[1] ?? m[2])!);
        const to = areaOf(target);
        if (!to || to === from) continue;
        if (!ALLOWED[from].includes(to))
          violations.push(`${relative(ROOT, file)} imports ${relative(ROOT, target)}`);
      }
    }
    expect(violations).toEqual([]);
  });
});

describe('one of each mechanism (item 21)', () => {
  const files = [...sources(join(ROOT, 'src')), ...sources(join(ROOT, 'adapters'))];
  const holding = (needle: string | RegExp) =>
    files
      .filter((f) => {
        const text = readFileSync(f, 'utf8');
        return typeof needle === 'string' ? text.includes(needle) : needle.test(text);
      })
      .map((f) => relative(ROOT, f));

  it('one file sniffer: the only file that knows a PDF by its bytes', () => {
    expect(holding("'%PDF-'")).toEqual(['src/util/file-sniff.ts']);
  });

  it('one capped download: the only reader of a response body, used by every adapter that fetches files', () => {
    expect(holding('getReader()')).toEqual(['src/chat/download.ts']);
    for (const adapter of ['discord/attachments.ts', 'slack/files.ts', 'web/images.ts']) {
      expect(readFileSync(join(ROOT, 'adapters', adapter), 'utf8'), adapter).toMatch(/downloadWithCap\(/);
    }
  });
});
