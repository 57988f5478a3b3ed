import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { readSafetensorsFile, writeSafetensors } from '../../src/convert/safetensors.js';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import { HAS_SHARED, ROOT, TINY_FIXTURE_DIR } from '../helpers/shared.js';

const BIN = join(ROOT, 'bin', 'blip2-bot.js');

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    input: input ?? '',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('blip2-bot ask / chat / inspect', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-ask-'));
  const demo = join(work, 'demo');
  const image = join(work, 'photo.png');
  beforeAll(async () => {
    await ensureDemoModel(demo);
    const raw = Buffer.alloc(40 * 30 * 3).map((_, i) => (i * 7) % 256);
    await sharp(raw, { raw: { width: 40, height: 30, channels: 3 } })
      .png()
      .toFile(image);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('ask --json prints text, ids and timings, and warns that the demo model is random', () => {
    const r = cli([
      'ask',
      '--model',
      demo,
      '--image',
      image,
      '--question',
      'what is this?',
      '--json',
      '--data-dir',
      join(work, 'data'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; ids: number[]; timings: Record<string, number> };
    expect(out.ids.length).toBeGreaterThan(0);
    expect(out.ids.length).toBeLessThanOrEqual(10); // question default: max 10 new tokens
    expect(typeof out.text).toBe('string');
    expect(out.timings.totalMs).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/meaningless/);
  });

  it('ask explains a bad image and usage errors without a stack trace', () => {
    const bad = join(work, 'notes.txt');
    writeFileSync(bad, 'just some text, not a picture');
    const r = cli(['ask', '--model', demo, '--image', bad, '--data-dir', join(work, 'data')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/image/i);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const missing = cli([
      'ask',
      '--model',
      demo,
      '--image',
      join(work, 'nope.png'),
      '--data-dir',
      join(work, 'data'),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read .*nope\.png: no such file/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    const usage = cli(['ask', '--model', demo]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--image/);
  });

  it('chat is the terminal chat of start: caption first, then each line, /caption, /help, polite errors (item 15)', () => {
    const r = cli(
      ['chat', '--model', demo, '--image', image, '--data-dir', join(work, 'data')],
      'what is it?\n/caption\n/help\n/image /dev/zero\nwhat colour is it?\n/quit\n',
    );
    expect(r.code, r.stderr).toBe(0);
    const answers = r.stdout.split('\n').filter((l) => l.includes('bot> '));
    // The caption of --image, two questions and /caption; /help is not sent to the model.
    expect(answers).toHaveLength(4);
    expect(r.stdout).toContain('you> ');
    expect(r.stdout).toMatch(/\/caption +describe the current picture again/);
    expect(r.stdout).toContain('the picture /dev/zero is not a regular file');
    expect(r.stdout).not.toMatch(/ENOENT|EISDIR|Unknown command/);
    // No info log lines in the conversation.
    expect(r.stderr).not.toMatch(/ INFO /);
  });

  describe.skipIf(!HAS_SHARED)('on the golden fixture', () => {
    it('ask --pixel-values --input-ids reproduces HF greedy ids; inspect dumps HF-named tensors', async () => {
      const model = join(work, 'tiny');
      await convertCheckpoint(TINY_FIXTURE_DIR, model);
      const golden = JSON.parse(readFileSync(join(TINY_FIXTURE_DIR, 'golden.json'), 'utf8'));
      const tensors = await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'golden.safetensors'));
      const pv = tensors.get('pixel_values.1')!;
      const pixels = join(work, 'pixels.safetensors');
      await writeSafetensors(pixels, [
        { name: 'pixel_values', dtype: 'F32', shape: pv.shape, data: pv.data as Float32Array },
      ]);
      const ids = golden.prompts.prompt.input_ids.join(',');
      const r = cli([
        'ask',
        '--model',
        model,
        '--pixel-values',
        pixels,
        '--input-ids',
        ids,
        '--num-beams',
        '1',
        '--max-new-tokens',
        '12',
        '--min-new-tokens',
        '0',
        '--json',
        '--data-dir',
        join(work, 'data'),
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect([0, ...JSON.parse(r.stdout).ids]).toEqual(golden.results.greedy[1]);

      const dump = join(work, 'dump.safetensors');
      const ins = cli([
        'inspect',
        '--model',
        model,
        '--pixel-values',
        pixels,
        '--input-ids',
        ids,
        '--out',
        dump,
      ]);
      expect(ins.code, ins.stderr).toBe(0);
      const out = await readSafetensorsFile(dump);
      for (const name of [
        'vision.last_hidden_state',
        'language_projection',
        't5.encoder.last_hidden_state',
        't5.logits.step0',
      ]) {
        const a = out.get(name)!.data as Float32Array;
        const g = tensors.get(`${name}.1`)!.data as Float32Array;
        expect(out.get(name)!.shape).toEqual(tensors.get(`${name}.1`)!.shape);
        let max = 0;
        for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - g[i]!));
        expect(max, name).toBeLessThan(1e-3);
      }
    });
  });
});
