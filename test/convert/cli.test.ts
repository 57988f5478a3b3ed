import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsFile, writeSafetensors } from '../../src/convert/safetensors.js';
import { writeTinyCheckpoint } from '../../src/convert/synthetic.js';
import { ROOT } from '../helpers/shared.js';

const BIN = join(ROOT, 'bin', 'blip2-bot.js');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Copies a checkpoint dir, letting `edit` change its tensors before they are written. */
async function variant(
  src: string,
  dst: string,
  edit: (tensors: Map<string, { dtype: string; shape: number[]; data: Float32Array }>) => void,
) {
  const tensors = (await readSafetensorsFile(join(src, 'model.safetensors'))) as unknown as Map<
    string,
    { dtype: string; shape: number[]; data: Float32Array }
  >;
  edit(tensors);
  for (const f of readdirSync(src))
    if (f !== 'model.safetensors') writeFileSync(join(dst, f), readFileSync(join(src, f)));
  await writeSafetensors(
    join(dst, 'model.safetensors'),
    [...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })),
  );
}

describe('blip2-bot convert (CLI)', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-cli-'));
  const good = join(work, 'good');
  beforeAll(async () => {
    await writeTinyCheckpoint(good, 7);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('converts at every dtype, prints a summary and writes a manifest; refuses to overwrite without --force', () => {
    for (const dtype of ['fp32', 'int8', 'int4']) {
      const out = join(work, `model-${dtype}`);
      const r = cli('convert', '--from', good, '--out', out, '--dtype', dtype);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/tensors\s+\d+/);
      expect(r.stdout).toMatch(/parameters\s+[\d,]+/);
      const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      expect(manifest).toMatchObject({ complete: true, dtype, demo: false });
      expect(manifest.source.checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
    }
    const again = cli('convert', '--from', good, '--out', join(work, 'model-fp32'));
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/--force/);
    expect(
      cli('convert', '--from', good, '--out', join(work, 'model-fp32'), '--dtype', 'fp32', '--force').code,
    ).toBe(0);
  });

  const failures: [string, (dir: string) => Promise<void>, RegExp][] = [
    [
      'truncated safetensors',
      async (dir) => {
        await variant(good, dir, () => {});
        const file = join(dir, 'model.safetensors');
        truncateSync(file, Math.floor(readFileSync(file).length / 2));
      },
      /truncated|ends|short/i,
    ],
    [
      'missing tensor',
      (dir) => variant(good, dir, (t) => t.delete('language_model.lm_head.weight')),
      /language_model\.lm_head\.weight/,
    ],
    [
      'wrong shape',
      (dir) =>
        variant(good, dir, (t) => {
          const w = t.get('vision_model.encoder.layers.0.mlp.fc1.weight')!;
          w.shape = [w.shape[1]!, w.shape[0]!];
        }),
      /vision_model\.encoder\.layers\.0\.mlp\.fc1\.weight/,
    ],
    [
      'unknown model_type',
      async (dir) => {
        await variant(good, dir, () => {});
        const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
        cfg.model_type = 'llava';
        writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      },
      /model_type.*llava|blip-2/,
    ],
  ];
  for (const [name, make, message] of failures) {
    it(`${name} → clear error, non-zero exit, no model written`, async () => {
      const dir = join(work, name.replace(/\W+/g, '-'));
      const out = join(work, `out-${name.replace(/\W+/g, '-')}`);
      rmSync(dir, { recursive: true, force: true });
      const { mkdirSync } = await import('node:fs');
      mkdirSync(dir);
      await make(dir);
      const r = cli('convert', '--from', dir, '--out', out);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(work).filter((f) => f.includes('.partial-'))).toEqual([]);
    });
  }
});
