import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import { ImageError, InputError, QueueFullError, RequestAbortedError } from '../../src/engine/errors.js';
import { HAS_SHARED, IMAGES_DIR } from '../helpers/shared.js';

async function photo(seed: number): Promise<Uint8Array> {
  const raw = Buffer.alloc(64 * 48 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 31 + seed * 97) % 251;
  return new Uint8Array(
    await sharp(raw, { raw: { width: 64, height: 48, channels: 3 } })
      .png()
      .toBuffer(),
  );
}

describe('Blip2Engine on the demo model', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-engine-'));
  const modelDir = join(work, 'demo');
  const dataDir = join(work, 'data');
  let engine: Blip2Engine;

  beforeAll(async () => {
    await ensureDemoModel(modelDir);
    engine = await Blip2Engine.load(modelDir, { dataDir });
  });
  afterAll(async () => {
    await engine?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('is marked as the demo model', () => {
    expect(engine.demo).toBe(true);
  });

  it('a follow-up about a cached image never runs vision or Q-Former', async () => {
    const bytes = await photo(1);
    const runs = () => ({ ...engine.model.runs });
    const before = runs();
    const first = await engine.generate({
      image: bytes,
      task: 'caption',
      options: { numBeams: 1, maxNewTokens: 5 },
    });
    expect(first.imageCached).toBe(false);
    expect(engine.model.runs.vision - before.vision).toBe(1);
    expect(engine.model.runs.qformer - before.qformer).toBe(1);
    const key = engine.imageKey(bytes);
    const mid = runs();
    const follow = await engine.generate({
      image: key,
      question: 'what is it?',
      history: [{ question: 'what is this?', answer: first.text }],
      options: { maxNewTokens: 4 },
    });
    expect(follow.imageCached).toBe(true);
    expect(engine.model.runs.vision).toBe(mid.vision);
    expect(engine.model.runs.qformer).toBe(mid.qformer);
    expect(engine.model.runs.encoder).toBe(mid.encoder + 1);
    // The same bytes again are a cache hit too.
    const again = await engine.generate({ image: bytes, question: 'and now?', options: { maxNewTokens: 3 } });
    expect(again.imageCached).toBe(true);
    expect(engine.model.runs.vision).toBe(mid.vision);
  });

  it('the SQLite cache survives a restart: the new process runs no vision', async () => {
    const bytes = await photo(2);
    const key = await engine.encodeImage(bytes);
    const reopened = await Blip2Engine.load(modelDir, { dataDir });
    try {
      const r = await reopened.generate({
        image: key,
        question: 'what colour?',
        options: { maxNewTokens: 3 },
      });
      expect(r.imageCached).toBe(true);
      expect(reopened.model.runs.vision).toBe(0);
      expect(reopened.model.runs.qformer).toBe(0);
    } finally {
      await reopened.close();
    }
  });

  it('an unknown image key says the picture has to be sent again', async () => {
    await expect(engine.generate({ image: 'img-0000', question: 'hi?' })).rejects.toMatchObject({
      code: 'expired',
    });
  });

  it('expired cache entries are recomputed from bytes, and a key alone is refused after the TTL', async () => {
    const shortLived = await Blip2Engine.load(modelDir, { store: { kind: 'memory' }, cacheTtlMs: 60_000 });
    // The cache dates entries with Date.now(): a fake clock (Date only; onnxruntime and timers stay real).
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const bytes = await photo(3);
      const key = await shortLived.encodeImage(bytes);
      vi.setSystemTime(Date.now() + 61_000);
      await expect(shortLived.generate({ image: key, question: 'hi?' })).rejects.toBeInstanceOf(ImageError);
      const r = await shortLived.generate({ image: bytes, question: 'hi?', options: { maxNewTokens: 2 } });
      expect(r.imageCached).toBe(false);
    } finally {
      vi.useRealTimers();
      await shortLived.close();
    }
  });

  it('sampling with a seed is reproducible and depends on the seed', async () => {
    const bytes = await photo(4);
    const sample = (seed: number) =>
      engine.generate({
        image: bytes,
        task: 'caption',
        options: { doSample: true, seed, numBeams: 1, maxNewTokens: 8, minNewTokens: 8 },
      });
    const a = await sample(11);
    const b = await sample(11);
    const c = await sample(12);
    expect(a.ids).toEqual(b.ids);
    expect(c.ids).not.toEqual(a.ids);
  });

  it('streams tokens through onToken in greedy mode', async () => {
    const seen: number[] = [];
    const r = await engine.generate({
      image: await photo(5),
      question: 'what?',
      options: { numBeams: 1, maxNewTokens: 6 },
      onToken: ({ id }) => seen.push(id),
    });
    expect(seen).toEqual(r.ids);
  });

  it('an AbortSignal stops a running generation', async () => {
    const controller = new AbortController();
    const bytes = await photo(6);
    let tokens = 0;
    const running = engine.generate({
      image: bytes,
      task: 'caption',
      signal: controller.signal,
      options: { numBeams: 1, maxNewTokens: 200, minNewTokens: 200 },
      onToken: () => {
        if (++tokens === 3) controller.abort();
      },
    });
    await expect(running).rejects.toBeInstanceOf(RequestAbortedError);
    expect(tokens).toBeLessThan(10);
  });

  it('reports queue positions while requests wait, refuses past capacity, and answers all', async () => {
    const small = await Blip2Engine.load(modelDir, {
      store: { kind: 'memory' },
      queueCapacity: 3,
      batchRequests: 1, // one request at a time: positions move one by one
    });
    try {
      const bytes = await photo(7);
      const positions: number[][] = [[], [], [], []];
      const jobs = positions.map((p, i) =>
        small.generate({
          image: bytes,
          question: `q${i}?`,
          options: { maxNewTokens: 3 },
          onQueuePosition: (n) => p.push(n),
        }),
      );
      const overflow = small.generate({ image: bytes, question: 'one too many?' });
      await expect(overflow).rejects.toBeInstanceOf(QueueFullError);
      const results = await Promise.all(jobs);
      expect(results).toHaveLength(4);
      expect(positions[0]).toEqual([]); // ran at once
      expect(positions[1]).toEqual([1]);
      expect(positions[2]).toEqual([2, 1]);
      expect(positions[3]).toEqual([3, 2, 1]);
    } finally {
      await small.close();
    }
  });

  it('an empty question and a non-image are refused politely', async () => {
    await expect(engine.generate({ image: await photo(8), question: '   ' })).rejects.toBeInstanceOf(
      InputError,
    );
    const err = await engine
      .generate({ image: new TextEncoder().encode('%PDF-1.7 hello'), question: 'what?' })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).userMessage).toMatch(/PDF/i);
  });

  it('drops the oldest turns when history does not fit the encoder budget, never the question', async () => {
    const tight = await Blip2Engine.load(modelDir, { store: { kind: 'memory' }, encoderBudget: 60 });
    try {
      const history = Array.from({ length: 10 }, (_, i) => ({
        question: `question number ${i} about it?`,
        answer: `answer ${i}`,
      }));
      const r = await tight.generate({
        image: await photo(9),
        question: 'last one?',
        history,
        options: { maxNewTokens: 2 },
      });
      expect(r.droppedTurns).toBeGreaterThan(0);
      expect(r.droppedTurns).toBeLessThan(10);
    } finally {
      await tight.close();
    }
  });

  describe.skipIf(!HAS_SHARED)('every image in ../shared/assets/images', () => {
    it('gives an answer or a clear ImageError, never a crash', async () => {
      const files = readdirSync(IMAGES_DIR).filter((f) => /\.(jpe?g|png|webp|gif)$/i.test(f));
      expect(files.length).toBeGreaterThanOrEqual(20);
      const outcomes: string[] = [];
      for (const f of files) {
        try {
          const r = await engine.generate({
            image: new Uint8Array(readFileSync(join(IMAGES_DIR, f))),
            task: 'caption',
            options: { numBeams: 1, maxNewTokens: 3, minNewTokens: 0 },
          });
          expect(r.ids.length).toBeGreaterThan(0);
          outcomes.push(`${f}: answered`);
        } catch (e) {
          expect(e, f).toBeInstanceOf(ImageError);
          // Only the two broken files may fail, each with the message for its problem.
          expect(f, (e as ImageError).userMessage).toMatch(
            /^(truncated-progressive|corrupt-header-only)\.jpg$/,
          );
          expect((e as ImageError).code).toBe('corrupt');
          expect((e as ImageError).userMessage).toMatch(/the file seems to be damaged/);
          outcomes.push(`${f}: ${(e as ImageError).code} — ${(e as ImageError).userMessage}`);
        }
      }
      console.log(outcomes.join('\n'));
      expect(outcomes.filter((o) => o.endsWith('answered')).length).toBeGreaterThanOrEqual(19);
    });
  });
});
