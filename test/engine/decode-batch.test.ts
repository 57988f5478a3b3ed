/**
 * Several requests at once decode in one merged decoder batch (src/engine/decode-batch.ts): every request's ids
 * must equal HF's golden ids, which are also what each gives decoded alone (engine-parity / opt-engine-parity).
 * The requests here differ in prompt length (encoder rows padded), in beams (1 or 3 rows), and join while others
 * are mid-answer (their caches left-padded); one is aborted mid-batch.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { type LoadedTensor, readSafetensorsFile } from '../../src/convert/safetensors.js';
import type { GenerateResult } from '../../src/engine/api.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import { RequestAbortedError } from '../../src/engine/errors.js';
import { HAS_OPT_FIXTURE, HAS_SHARED, OPT_FIXTURE_DIR, TINY_FIXTURE_DIR } from '../helpers/shared.js';

interface Golden {
  prompts: Record<'prompt' | 'two_turn', { input_ids: number[] }>;
  results: Record<'greedy' | 'beam3' | 'greedy_two_turn' | 'beam3_two_turn', number[][]>;
}

const GREEDY = { numBeams: 1, maxNewTokens: 12, minNewTokens: 0 };
const BEAM3 = { numBeams: 3, maxNewTokens: 12, minNewTokens: 0, lengthPenalty: 1, earlyStopping: false };
const CASES = [
  ['greedy', 'prompt', GREEDY],
  ['beam3', 'prompt', BEAM3],
  ['greedy_two_turn', 'two_turn', GREEDY],
  ['beam3_two_turn', 'two_turn', BEAM3],
] as const;

const FAMILIES = [
  { name: 'FlanT5 (blip2-tiny)', dir: TINY_FIXTURE_DIR, present: HAS_SHARED, start: 0 },
  // HF's BLIP-2 OPT output starts with bos 2; our ids are the tokens after it.
  { name: 'OPT (blip2-opt-tiny)', dir: OPT_FIXTURE_DIR, present: HAS_OPT_FIXTURE, start: 2 },
];

for (const family of FAMILIES) {
  describe.skipIf(!family.present)(`batched decoding across requests, ${family.name}`, () => {
    let work: string;
    let engine: Blip2Engine;
    let golden: Golden;
    let tensors: Map<string, LoadedTensor>;

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), 'blip2-decode-batch-'));
      golden = JSON.parse(readFileSync(join(family.dir, 'golden.json'), 'utf8')) as Golden;
      tensors = await readSafetensorsFile(join(family.dir, 'golden.safetensors'));
      await convertCheckpoint(family.dir, join(work, 'model'));
      engine = await Blip2Engine.load(join(work, 'model'), { store: { kind: 'memory' }, batchRequests: 8 });
    });
    afterAll(async () => {
      await engine?.close();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    const pixels = (i: number) => {
      const t = tensors.get(`pixel_values.${i}`)!;
      return { pixelValues: { data: t.data as Float32Array, dims: t.shape } };
    };

    it('twelve requests at once (greedy and 3 beams, two prompt lengths) each give the golden ids', async () => {
      const before = { ...engine.decodeBatch.batch.stats };
      const runs: { label: string; want: number[]; answer: Promise<GenerateResult> }[] = [];
      for (const [result, prompt, options] of CASES) {
        for (let i = 0; i < 3; i++) {
          runs.push({
            label: `${result} image ${i}`,
            want: golden.results[result][i]!,
            answer: engine.generate({
              image: pixels(i),
              inputIds: golden.prompts[prompt].input_ids,
              options,
            }),
          });
        }
      }
      const answers = await Promise.all(runs.map((r) => r.answer));
      for (const [n, r] of runs.entries())
        expect([family.start, ...answers[n]!.ids], r.label).toEqual(r.want);

      const stats = engine.decodeBatch.batch.stats;
      const steps = stats.steps - before.steps;
      const serialSteps = answers.reduce((sum, a) => sum + a.timings.decodeSteps, 0);
      // Merged: far fewer decoder runs than the requests' steps one by one, with requests of different lengths.
      expect(stats.largestBatch).toBeGreaterThanOrEqual(4);
      expect(steps).toBeLessThan(serialSteps / 2);
      expect(stats.paddedSteps - before.paddedSteps).toBeGreaterThan(0);
    });

    it('requests that join mid-answer, and one aborted mid-batch, leave the others their golden ids', async () => {
      const controller = new AbortController();
      // Settled as they end (an abort would otherwise be an unhandled rejection until awaited below).
      const joined: Promise<PromiseSettledResult<GenerateResult>>[] = [];
      const settle = (p: Promise<GenerateResult>) =>
        joined.push(
          p.then(
            (value) => ({ status: 'fulfilled', value }) as const,
            (reason: unknown) => ({ status: 'rejected', reason }) as const,
          ),
        );
      let tokens = 0;
      let abortedTokens = 0;
      const first = engine.generate({
        image: pixels(0),
        inputIds: golden.prompts.prompt.input_ids,
        options: GREEDY,
        onToken: () => {
          tokens++;
          // After 2 and 4 tokens of the first answer: a 3-beam request and a request that is then aborted.
          if (tokens === 2) {
            settle(
              engine.generate({
                image: pixels(1),
                inputIds: golden.prompts.two_turn.input_ids,
                options: BEAM3,
              }),
            );
          }
          if (tokens === 4) {
            settle(
              engine.generate({
                image: pixels(2),
                inputIds: golden.prompts.prompt.input_ids,
                options: { ...GREEDY, maxNewTokens: 40, minNewTokens: 40 },
                signal: controller.signal,
                onToken: () => {
                  if (++abortedTokens === 2) controller.abort();
                },
              }),
            );
          }
        },
      });
      const one = await first;
      expect([family.start, ...one.ids]).toEqual(golden.results.greedy[0]);
      expect(joined).toHaveLength(2);
      const [beams, aborted] = (await Promise.all(joined)) as [
        PromiseSettledResult<GenerateResult>,
        PromiseSettledResult<GenerateResult>,
      ];
      expect(beams.status).toBe('fulfilled');
      if (beams.status === 'fulfilled') {
        expect([family.start, ...beams.value.ids]).toEqual(golden.results.beam3_two_turn[1]);
      }
      expect(aborted.status).toBe('rejected');
      if (aborted.status === 'rejected') expect(aborted.reason).toBeInstanceOf(RequestAbortedError);
      // Nothing stays behind in the batch, and the next request decodes as before.
      expect(engine.decodeBatch.batch.size).toBe(0);
      const after = await engine.generate({
        image: pixels(2),
        inputIds: golden.prompts.prompt.input_ids,
        options: GREEDY,
      });
      expect([family.start, ...after.ids]).toEqual(golden.results.greedy[2]);
    });
  });
}
