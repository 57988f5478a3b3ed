import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { type LoadedTensor, readSafetensorsFile } from '../../src/convert/safetensors.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import { HAS_SHARED, TINY_FIXTURE_DIR } from '../helpers/shared.js';

interface Golden {
  prompts: { prompt: { input_ids: number[] }; two_turn: { input_ids: number[] } };
  images: { file: string }[];
  results: Record<'greedy' | 'beam3' | 'greedy_two_turn' | 'beam3_two_turn', number[][]>;
}

/** golden.json's generation settings: max 12 new tokens, no minimum, length penalty 1, early_stopping False. */
const GREEDY = { numBeams: 1, maxNewTokens: 12, minNewTokens: 0 };
const BEAM3 = { numBeams: 3, maxNewTokens: 12, minNewTokens: 0, lengthPenalty: 1, earlyStopping: false };

describe.skipIf(!HAS_SHARED)('generation parity with HF on blip2-tiny (golden ids)', () => {
  // Created in beforeAll, not here: a skipped suite's body still runs, its afterAll does not.
  let work: string;
  let engine: Blip2Engine;
  let golden: Golden;
  let tensors: Map<string, LoadedTensor>;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'blip2-engine-parity-'));
    golden = JSON.parse(readFileSync(join(TINY_FIXTURE_DIR, 'golden.json'), 'utf8')) as Golden;
    tensors = await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'golden.safetensors'));
    await convertCheckpoint(TINY_FIXTURE_DIR, join(work, 'model'));
    engine = await Blip2Engine.load(join(work, 'model'), { store: { kind: 'memory' } });
  });
  afterAll(async () => {
    await engine?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const pixels = (i: number) => {
    const t = tensors.get(`pixel_values.${i}`)!;
    return { pixelValues: { data: t.data as Float32Array, dims: t.shape } };
  };

  const cases = [
    ['greedy', 'prompt', GREEDY],
    ['beam3', 'prompt', BEAM3],
    ['greedy_two_turn', 'two_turn', GREEDY],
    ['beam3_two_turn', 'two_turn', BEAM3],
  ] as const;
  for (const [result, prompt, options] of cases) {
    it(`${result}: ids equal golden.json for every image (from golden pixel_values)`, async () => {
      for (let i = 0; i < 3; i++) {
        const r = await engine.generate({
          image: pixels(i),
          inputIds: golden.prompts[prompt].input_ids,
          options,
        });
        expect([0, ...r.ids], `image ${i}`).toEqual(golden.results[result][i]);
      }
    });
  }

  it('ids from our own preprocessing of the fixture images, reported beside the golden ones', async () => {
    const rows: string[] = [];
    let same = 0;
    for (let i = 0; i < 3; i++) {
      const bytes = new Uint8Array(readFileSync(join(TINY_FIXTURE_DIR, golden.images[i]!.file)));
      const r = await engine.generate({
        image: bytes,
        inputIds: golden.prompts.prompt.input_ids,
        options: GREEDY,
      });
      const ours = [0, ...r.ids];
      const gold = golden.results.greedy[i]!;
      if (JSON.stringify(ours) === JSON.stringify(gold)) same++;
      rows.push(
        `image ${i} greedy from our pixels: ${ours.join(',')}\n        golden:                ${gold.join(',')}`,
      );
      // The first tokens depend least on sub-0.02 pixel differences: they must agree.
      expect(ours.slice(0, 2)).toEqual(gold.slice(0, 2));
    }
    console.log(`${rows.join('\n')}\n${same}/3 identical`);
  });
});
