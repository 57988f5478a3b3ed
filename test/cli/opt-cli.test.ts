import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { type LoadedTensor, readSafetensorsFile, writeSafetensors } from '../../src/convert/safetensors.js';
import { HAS_OPT_FIXTURE, OPT_FIXTURE_DIR, ROOT } from '../helpers/shared.js';

const BIN = join(ROOT, 'bin', 'blip2-bot.js');

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!HAS_OPT_FIXTURE)('blip2-bot ask / inspect on an OPT model (blip2-opt-tiny)', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-opt-cli-'));
  const model = join(work, 'model');
  const pixels = join(work, 'pixels.safetensors');
  let golden: {
    prompts: Record<'prompt' | 'two_turn', { input_ids: number[] }>;
    results: Record<'greedy' | 'beam3_two_turn' | 'greedy_caption', number[][]>;
  };
  let tensors: Map<string, LoadedTensor>;

  beforeAll(async () => {
    await convertCheckpoint(OPT_FIXTURE_DIR, model);
    golden = JSON.parse(readFileSync(join(OPT_FIXTURE_DIR, 'golden.json'), 'utf8'));
    tensors = await readSafetensorsFile(join(OPT_FIXTURE_DIR, 'golden.safetensors'));
    const pv = tensors.get('pixel_values.2')!;
    await writeSafetensors(pixels, [
      { name: 'pixel_values', dtype: 'F32', shape: pv.shape, data: pv.data as Float32Array },
    ]);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const ask = (extra: string[]) => {
    const r = cli([
      'ask',
      '--model',
      model,
      '--pixel-values',
      pixels,
      '--max-new-tokens',
      '12',
      '--min-new-tokens',
      '0',
      '--json',
      '--data-dir',
      join(work, 'data'),
      ...extra,
    ]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { text: string; ids: number[] };
  };

  it('ask --json: greedy, 3 beams over two turns, and a caption reproduce HF ids ([2] + ids)', () => {
    const greedy = ask(['--question', 'what is in the picture?', '--num-beams', '1']);
    expect([2, ...greedy.ids]).toEqual(golden.results.greedy[2]);
    const twoTurn = ask(['--input-ids', golden.prompts.two_turn.input_ids.join(','), '--num-beams', '3']);
    expect([2, ...twoTurn.ids]).toEqual(golden.results.beam3_two_turn[2]);
    const caption = ask(['--prompt', '', '--num-beams', '1']);
    expect([2, ...caption.ids]).toEqual(golden.results.greedy_caption[2]);
  });

  it('inspect writes HF-named tensors, logits at every prompt position', async () => {
    const dump = join(work, 'dump.safetensors');
    const r = cli(['inspect', '--model', model, '--pixel-values', pixels, '--out', dump]);
    expect(r.code, r.stderr).toBe(0);
    const out = await readSafetensorsFile(dump);
    for (const [name, tolerance] of [
      ['pixel_values', 0],
      ['vision.last_hidden_state', 1e-3],
      ['qformer.last_hidden_state', 1e-4],
      ['language_projection', 1e-4],
      ['opt.inputs_embeds', 1e-4],
      ['opt.logits', 1e-3],
    ] as const) {
      const a = out.get(name)!;
      const g = tensors.get(`${name}.2`)!;
      expect(a.shape, name).toEqual(g.shape);
      let max = 0;
      const ad = a.data as Float32Array;
      const gd = g.data as Float32Array;
      for (let i = 0; i < ad.length; i++) max = Math.max(max, Math.abs(ad[i]! - gd[i]!));
      expect(max, name).toBeLessThanOrEqual(tolerance);
    }
    expect(out.get('opt.logits')!.shape).toEqual([1, 8 + 11, 50304]);
  });
});
