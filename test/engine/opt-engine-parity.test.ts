import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { type LoadedTensor, readSafetensorsFile } from '../../src/convert/safetensors.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import { generateTokens } from '../../src/engine/generation/generate.js';
import { resolveGenerationOptions } from '../../src/engine/generation/options.js';
import { generationTokenIds } from '../../src/model/config.js';
import { HAS_OPT_FIXTURE, OPT_FIXTURE_DIR } from '../helpers/shared.js';

interface Golden {
  prompts: Record<'prompt' | 'two_turn' | 'text_only', { text: string; input_ids: number[] }>;
  results: Record<'greedy' | 'beam3' | 'greedy_two_turn' | 'beam3_two_turn' | 'greedy_caption', number[][]> &
    Record<'beam3_scores' | 'beam3_two_turn_scores', number[]> & { text_only: { greedy: number[] } };
}

/** golden.json's settings: max 12 new tokens, no minimum; beams with length penalty 1, early_stopping False. */
const GREEDY = { numBeams: 1, maxNewTokens: 12, minNewTokens: 0 };
const BEAM3 = { numBeams: 3, maxNewTokens: 12, minNewTokens: 0, lengthPenalty: 1, earlyStopping: false };

describe.skipIf(!HAS_OPT_FIXTURE)('generation parity with HF on blip2-opt-tiny (golden ids)', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-opt-engine-'));
  let engine: Blip2Engine;
  let golden: Golden;
  let tensors: Map<string, LoadedTensor>;

  beforeAll(async () => {
    golden = JSON.parse(readFileSync(join(OPT_FIXTURE_DIR, 'golden.json'), 'utf8')) as Golden;
    tensors = await readSafetensorsFile(join(OPT_FIXTURE_DIR, 'golden.safetensors'));
    await convertCheckpoint(OPT_FIXTURE_DIR, join(work, 'model'));
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

  // HF's BLIP-2 returns [bos 2] + new tokens; our ids are the new tokens (after the start token, as for FlanT5).
  const cases = [
    ['greedy', 'prompt', GREEDY],
    ['beam3', 'prompt', BEAM3],
    ['greedy_two_turn', 'two_turn', GREEDY],
    ['beam3_two_turn', 'two_turn', BEAM3],
  ] as const;
  for (const [result, prompt, options] of cases) {
    it(`${result}: [2, ...ids] equal golden.json for every image`, async () => {
      for (let i = 0; i < 3; i++) {
        const r = await engine.generate({
          image: pixels(i),
          inputIds: golden.prompts[prompt].input_ids,
          options,
        });
        expect([2, ...r.ids], `image ${i}`).toEqual(golden.results[result][i]);
      }
    });
  }

  it('beam scores equal HF sequences_scores: log-probs over the new tokens, the end token counted', async () => {
    const model = engine.model;
    const options = resolveGenerationOptions('question', BEAM3, generationTokenIds(model.config));
    for (const [prompt, scores] of [
      ['prompt', 'beam3_scores'],
      ['two_turn', 'beam3_two_turn_scores'],
    ] as const) {
      for (let i = 0; i < 3; i++) {
        const image = await model.queryEncode(await model.visionEncode(pixels(i).pixelValues));
        const state = await model.encode(image.queryEmbeds, golden.prompts[prompt].input_ids);
        const r = await generateTokens(model.decoder(state), options);
        expect(r.score!, `${prompt} image ${i}`).toBeCloseTo(golden.results[scores][i]!, 4);
      }
    }
  });

  it('questions and a two-turn conversation through the tokenizer and LAVIS prompts give the same ids', async () => {
    for (let i = 0; i < 3; i++) {
      const one = await engine.generate({
        image: pixels(i),
        question: 'what is in the picture?',
        options: GREEDY,
      });
      expect([2, ...one.ids], `image ${i}`).toEqual(golden.results.greedy[i]);
      const two = await engine.generate({
        image: pixels(i),
        question: 'what color is the couch?',
        history: [{ question: 'what is in the picture?', answer: 'two cats lying on a pink couch' }],
        options: BEAM3,
      });
      expect([2, ...two.ids], `image ${i}`).toEqual(golden.results.beam3_two_turn[i]);
      // The answer ends at "\n" (id 50118), which stays in the ids; the text is stripped as LAVIS does.
      if (two.ids.at(-1) === 50118) expect(two.text).toBe(two.text.trim());
    }
  });

  it('captioning from [bos] (an empty prompt) matches HF greedy for every image', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await engine.generate({ image: pixels(i), prompt: '', options: GREEDY });
      expect([2, ...r.ids], `image ${i}`).toEqual(golden.results.greedy_caption[i]);
    }
  });

  it('a caption asked for without a prompt uses LAVIS\'s OPT prompt "a photo of"', async () => {
    const byDefault = await engine.generate({ image: pixels(0), task: 'caption', options: GREEDY });
    const prompted = await engine.generate({ image: pixels(0), prompt: 'a photo of', options: GREEDY });
    expect(byDefault.ids).toEqual(prompted.ids);
    expect([2, ...byDefault.ids]).not.toEqual(golden.results.greedy_caption[0]);
  });

  it('text only (no image): the prompt followed by the new ids equals OPTForCausalLM.generate', async () => {
    const ids = golden.prompts.text_only.input_ids;
    const r = await engine.generate({ inputIds: ids, options: GREEDY });
    expect([...ids, ...r.ids]).toEqual(golden.results.text_only.greedy);
  });

  it('refuses a prompt that does not fit the position table, politely', async () => {
    const long = 'word '.repeat(200);
    await expect(engine.generate({ image: pixels(0), question: long, options: GREEDY })).rejects.toThrow(
      /too long/,
    );
  });
});
