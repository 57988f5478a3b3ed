import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint, readManifest } from '../../src/convert/convert.js';
import { writeTinyCheckpoint } from '../../src/convert/synthetic.js';
import type { ModelManifest } from '../../src/model/graph-io.js';
import { ROOT } from '../helpers/shared.js';

const BIN = join(ROOT, 'bin', 'blip2-bot.js');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function kernelsOf(m: ModelManifest, test: (weight: string) => boolean): Set<string> {
  return new Set(
    Object.entries(m.precision!.matmuls)
      .filter(([w]) => test(w))
      .map(([, p]) => p.kernel),
  );
}

const isWo = (w: string) => /\.DenseReluDense\.wo\.weight$/.test(w);
const isQFormer = (w: string) => w.startsWith('qformer.') || w.startsWith('language_projection');

describe('the precision policy in every fixed format', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-policy-'));
  const hf = join(work, 'hf');
  const manifests: Record<string, ModelManifest> = {};
  beforeAll(async () => {
    await writeTinyCheckpoint(hf, 3);
    for (const dtype of ['fp32', 'int8', 'int4', 'mixed'] as const) {
      await convertCheckpoint(hf, join(work, dtype), { dtype });
      manifests[dtype] = (await readManifest(join(work, dtype)))!;
    }
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('keeps the Q-Former fp32 and never quantises the activations of T5 wo', () => {
    expect(kernelsOf(manifests.mixed!, isQFormer)).toEqual(new Set(['fp32']));
    expect(kernelsOf(manifests.int8!, isQFormer)).toEqual(new Set(['fp32']));
    expect(kernelsOf(manifests.mixed!, isWo)).toEqual(new Set(['nbits4-a32']));
    expect(kernelsOf(manifests.int4!, isWo)).toEqual(new Set(['nbits4-a32']));
    expect(kernelsOf(manifests.int8!, isWo)).toEqual(new Set(['nbits8-a32']));
    expect(kernelsOf(manifests.fp32!, () => true)).toEqual(new Set(['fp32']));
    // Everything else keeps its format's kernel.
    const rest = (w: string) => !isWo(w) && !isQFormer(w);
    expect(kernelsOf(manifests.mixed!, (w) => rest(w) && w.startsWith('vision_model'))).toEqual(
      new Set(['int8-dynamic']),
    );
    expect(kernelsOf(manifests.mixed!, (w) => rest(w) && w.startsWith('language_model'))).toEqual(
      new Set(['nbits4-a8']),
    );
  });

  it('records every MatMul weight of the checkpoint by its tensor name, fused ones naming each other', () => {
    const m = manifests.mixed!.precision!.matmuls;
    const q = m['language_model.decoder.block.1.layer.0.SelfAttention.q.weight']!;
    expect(q).toMatchObject({ graph: 'decoder', node: '/decoder/block.1/layer.0/SelfAttention/qkv' });
    expect(q.fusedWith).toEqual([
      'language_model.decoder.block.1.layer.0.SelfAttention.k.weight',
      'language_model.decoder.block.1.layer.0.SelfAttention.v.weight',
    ]);
    expect(m['language_model.lm_head.weight']?.graph).toBe('decoder');
    expect(manifests.mixed!.graphs.qformer?.kernels).toEqual({ fp32: expect.any(Number) });
  });

  it('refuses dtype auto without a calibrated plan, and accuracy levels other than 1 and 4', async () => {
    await expect(convertCheckpoint(hf, join(work, 'auto-direct'), { dtype: 'auto' })).rejects.toThrow(
      /calibrated plan/,
    );
    await expect(
      convertCheckpoint(hf, join(work, 'lvl2'), { dtype: 'int4', accuracyLevel: 2 }),
    ).rejects.toThrow(/accuracy-level must be 4 .* or 1/);
  });

  it('convert defaults to auto and prints the fidelity report; models info shows it again', () => {
    const out = join(work, 'cli-auto');
    const r = cli('convert', '--from', hf, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\(auto\)/);
    expect(r.stdout).toMatch(/Precision: --dtype auto/);
    expect(r.stdout).toMatch(/Agreement with fp32 on identical inputs/);
    expect(r.stdout).toMatch(/greedy ids identical for \d+\/12/);
    const info = cli('models', 'info', out);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/Activation outliers/);
    expect(info.stdout).toMatch(/qformer\s+\d+× fp32/);
    const none = cli('models', 'info', work);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/does not hold a converted model/);
    expect(none.stderr).not.toMatch(/\n\s+at /);
  });
});
