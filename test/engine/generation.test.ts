import { describe, expect, it } from 'vitest';
import type { GenerationOptions } from '../../src/engine/api.js';
import { InputError, RequestAbortedError } from '../../src/engine/errors.js';
import {
  BeamHypotheses,
  createLogitsWarpers,
  type DecoderStepper,
  GENERATION_LIMITS,
  generateTokens,
  kthLargest,
  MinNewTokensProcessor,
  NoRepeatNgramProcessor,
  RepetitionPenaltyProcessor,
  type ResolvedGenerationOptions,
  resolveGenerationOptions,
  TASK_GENERATION_DEFAULTS,
  TemperatureWarper,
  TokenHistory,
  TopKWarper,
  TopPWarper,
} from '../../src/engine/generation/index.js';
import { sampleCandidates, sampleToken } from '../../src/engine/generation/select.js';
import { Rng } from '../../src/util/random.js';

const START = 0;
const EOS = 1;
const SPECIAL = { decoderStartTokenId: START, eosTokenId: EOS, padTokenId: 0 };

type LanguageModel = (history: readonly number[]) => Float32Array;

/**
 * A decoder whose "KV cache" is each row's token history: its logits depend on the whole row, so a wrong
 * `selectRows` or a token fed to the wrong row changes what it computes, exactly as a real cache would.
 */
class HistoryStepper implements DecoderStepper {
  rows: number[][] = [[]];
  readonly stepInputs: number[][] = [];
  readonly selections: number[][] = [];

  constructor(
    readonly vocabSize: number,
    private readonly lm: LanguageModel,
    private readonly delayMs = 0,
  ) {}

  async step(tokens: readonly number[]): Promise<Float32Array> {
    if (tokens.length !== this.rows.length) {
      throw new Error(`step got ${tokens.length} tokens for ${this.rows.length} cache rows`);
    }
    this.stepInputs.push([...tokens]);
    const out = new Float32Array(tokens.length * this.vocabSize);
    tokens.forEach((token, i) => {
      this.rows[i]!.push(token);
      out.set(this.lm(this.rows[i]!), i * this.vocabSize);
    });
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    return out;
  }

  selectRows(rows: readonly number[]): void {
    this.selections.push([...rows]);
    this.rows = rows.map((r) => {
      const row = this.rows[r];
      if (!row) throw new Error(`selectRows: no row ${r}`);
      return [...row];
    });
  }
}

/** A random but fixed "language model": logits drawn from a PRNG seeded by the history, `</s>` nudged up. */
function randomLm(vocab: number, seed: number, eosBias = 0.8, scale = 1.5): LanguageModel {
  return (history) => {
    const logits = new Rng(seed, history.join(',')).fillNormal(
      new Float32Array(vocab),
      scale,
    ) as Float32Array;
    logits[EOS] = logits[EOS]! + eosBias;
    return logits;
  };
}

/** Logits equal to log(probabilities), from a table keyed by the history (unlisted: uniform). */
function tableLm(vocab: number, table: Record<string, Record<number, number>>): LanguageModel {
  return (history) => {
    const probs = table[history.join(',')];
    const out = new Float32Array(vocab);
    for (let v = 0; v < vocab; v++) out[v] = Math.log(probs ? (probs[v] ?? 1e-9) : 1 / vocab);
    return out;
  };
}

function options(
  overrides: GenerationOptions & { task?: 'caption' | 'question' } = {},
): ResolvedGenerationOptions {
  const { task = 'question', ...rest } = overrides;
  return resolveGenerationOptions(
    task,
    { numBeams: 1, minNewTokens: 0, lengthPenalty: 1, maxNewTokens: 8, seed: 1, ...rest },
    SPECIAL,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// An independent, slow restatement of transformers 4.40 `generate` (no cache: every step recomputes every beam
// from its full history, processors rebuild their tables from scratch), written the way the Python reads.
// ---------------------------------------------------------------------------------------------------------------

const f32 = Math.fround;

function refLogSoftmax(logits: Float32Array): number[] {
  const max = Math.max(...logits);
  const logSum = Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  return [...logits].map((x) => f32(x - max - logSum));
}

function refProcess(inputIds: number[], scores: number[], o: ResolvedGenerationOptions): number[] {
  const out = [...scores];
  if (o.repetitionPenalty !== 1) {
    for (const t of new Set(inputIds)) {
      out[t] = f32(scores[t]! < 0 ? scores[t]! * o.repetitionPenalty : scores[t]! / o.repetitionPenalty);
    }
  }
  const n = o.noRepeatNgramSize;
  if (n > 0 && inputIds.length + 1 >= n) {
    const table = new Map<string, number[]>();
    for (let i = 0; i + n <= inputIds.length; i++) {
      const key = inputIds.slice(i, i + n - 1).join(',');
      table.set(key, [...(table.get(key) ?? []), inputIds[i + n - 1]!]);
    }
    const prefix = inputIds.slice(inputIds.length + 1 - n).join(',');
    for (const t of table.get(prefix) ?? []) out[t] = Number.NEGATIVE_INFINITY;
  }
  if (inputIds.length - 1 < o.minNewTokens) out[o.eosTokenId] = Number.NEGATIVE_INFINITY;
  return out;
}

function referenceGreedy(lm: LanguageModel, o: ResolvedGenerationOptions): number[] {
  const inputIds = [START];
  while (inputIds.length < 1 + o.maxNewTokens) {
    const scores = refProcess(inputIds, [...lm(inputIds)], o);
    const next = scores.indexOf(Math.max(...scores));
    inputIds.push(next);
    if (next === EOS && !o.ignoreEos) break;
  }
  return inputIds.slice(1);
}

class RefHypotheses {
  beams: [number, number[]][] = [];
  worst = 1e9;
  constructor(private readonly o: ResolvedGenerationOptions) {}
  add(hyp: number[], sum: number, generatedLen: number): void {
    const score = sum / generatedLen ** this.o.lengthPenalty;
    if (this.beams.length < this.o.numBeams || score > this.worst) {
      this.beams.push([score, hyp]);
      if (this.beams.length > this.o.numBeams) {
        const sorted = this.beams
          .map((b, idx) => [b[0], idx] as const)
          .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.beams.splice(sorted[0]![1], 1);
        this.worst = sorted[1]![0];
      } else {
        this.worst = Math.min(score, this.worst);
      }
    }
  }
  isDone(best: number, curLen: number): boolean {
    if (this.beams.length < this.o.numBeams) return false;
    if (this.o.earlyStopping === true) return true;
    if (this.o.earlyStopping === false) return this.worst >= best / (curLen - 1) ** this.o.lengthPenalty;
    const denominator = this.o.lengthPenalty > 0 ? this.o.maxNewTokens : curLen - 1;
    return this.worst >= best / denominator ** this.o.lengthPenalty;
  }
}

const refStats = { skippedEos: 0 };

function referenceBeamSearch(
  lm: LanguageModel,
  o: ResolvedGenerationOptions,
): { ids: number[]; score: number } {
  const K = o.numBeams;
  const maxLength = 1 + o.maxNewTokens;
  const eos = o.ignoreEos ? undefined : EOS;
  let inputIds = Array.from({ length: K }, () => [START]);
  let beamScores: number[] = Array.from({ length: K }, (_, b) => (b === 0 ? 0 : -1e9));
  const hyps = new RefHypotheses(o);
  let done = false;
  for (;;) {
    const flat: { score: number; index: number }[] = [];
    inputIds.forEach((ids, b) => {
      const processed = refProcess(ids, refLogSoftmax(lm(ids)), o);
      processed.forEach((s) => {
        flat.push({ score: f32(s + beamScores[b]!), index: flat.length });
      });
    });
    const vocab = flat.length / K;
    const top = [...flat].sort((a, b) => b.score - a.score || a.index - b.index).slice(0, 2 * K);
    const curLen = inputIds[0]!.length + 1;
    const nextScores: number[] = [];
    const nextTokens: number[] = [];
    const nextIndices: number[] = [];
    for (let rank = 0; rank < top.length; rank++) {
      const { score, index } = top[rank]!;
      const token = index % vocab;
      const beam = Math.floor(index / vocab);
      if (eos !== undefined && token === eos) {
        if (rank >= K) {
          refStats.skippedEos++;
          continue;
        }
        hyps.add([...inputIds[beam]!], score, curLen - 1);
      } else {
        nextScores.push(score);
        nextTokens.push(token);
        nextIndices.push(beam);
      }
      if (nextScores.length === K) break;
    }
    done = done || hyps.isDone(top[0]!.score, curLen);
    inputIds = nextIndices.map((b, i) => [...inputIds[b]!, nextTokens[i]!]);
    beamScores = nextScores;
    if (done || inputIds[0]!.length >= maxLength) break;
  }
  if (!done) {
    inputIds.forEach((ids, b) => {
      hyps.add(ids, beamScores[b]!, ids.length - 1);
    });
  }
  const sorted = hyps.beams.map((b, i) => ({ b, i })).sort((x, y) => x.b[0] - y.b[0] || x.i - y.i);
  const [score, best] = sorted[sorted.length - 1]!.b;
  const sentMaxLen = Math.min(best.length + 1, maxLength);
  const decoded = best.length < sentMaxLen ? [...best, EOS] : best;
  return { ids: decoded.slice(1), score };
}

// ---------------------------------------------------------------------------------------------------------------

describe('resolveGenerationOptions', () => {
  it('applies the LAVIS task defaults and HF defaults for the rest', () => {
    const caption = resolveGenerationOptions('caption', undefined, SPECIAL);
    expect(caption).toMatchObject({
      numBeams: 5,
      maxNewTokens: 30,
      minNewTokens: 7,
      lengthPenalty: 1,
      earlyStopping: false,
      doSample: false,
      temperature: 1,
      topK: 50,
      topP: 1,
      repetitionPenalty: 1,
      noRepeatNgramSize: 0,
      ignoreEos: false,
      decoderStartTokenId: 0,
      eosTokenId: 1,
      padTokenId: 0,
    });
    expect(Number.isSafeInteger(caption.seed)).toBe(true);
    const question = resolveGenerationOptions('question', {}, SPECIAL);
    expect(question).toMatchObject({ numBeams: 5, maxNewTokens: 10, minNewTokens: 0, lengthPenalty: -1 });
    expect(TASK_GENERATION_DEFAULTS.caption.numBeams).toBe(5);
  });

  it('lets every default be overridden', () => {
    const o = resolveGenerationOptions(
      'caption',
      {
        numBeams: 3,
        maxNewTokens: 12,
        minNewTokens: 2,
        lengthPenalty: 0.5,
        earlyStopping: 'never',
        doSample: true,
        temperature: 0.7,
        topK: 0,
        topP: 0.9,
        seed: 42,
        repetitionPenalty: 1.2,
        noRepeatNgramSize: 3,
        ignoreEos: true,
      },
      SPECIAL,
    );
    expect(o).toMatchObject({
      numBeams: 3,
      maxNewTokens: 12,
      minNewTokens: 2,
      earlyStopping: 'never',
      seed: 42,
    });
    expect(o).toMatchObject({ doSample: true, temperature: 0.7, topK: 0, topP: 0.9, ignoreEos: true });
  });

  it('lowers a default minimum below a smaller chosen maximum, but rejects an explicit contradiction', () => {
    expect(resolveGenerationOptions('caption', { maxNewTokens: 4 }, SPECIAL).minNewTokens).toBe(4);
    expect(() => resolveGenerationOptions('caption', { maxNewTokens: 4, minNewTokens: 5 }, SPECIAL)).toThrow(
      /minNewTokens \(5\) must not be larger than maxNewTokens \(4\)/,
    );
  });

  it.each([
    [{ numBeams: 0 }, /numBeams must be a whole number from 1 to 32 \(got 0\)/],
    [{ numBeams: 1.5 }, /numBeams/],
    [{ numBeams: GENERATION_LIMITS.maxNumBeams + 1 }, /numBeams/],
    [{ maxNewTokens: 0 }, /maxNewTokens must be a whole number from 1/],
    [{ maxNewTokens: 10_000 }, /maxNewTokens/],
    [{ minNewTokens: -1 }, /minNewTokens/],
    [{ topP: 0 }, /topP must be above 0 and at most 1 \(got 0\)/],
    [{ topP: 1.5 }, /topP/],
    [{ topK: -1 }, /topK/],
    [{ temperature: 0 }, /temperature must be a number above 0/],
    [{ temperature: Number.NaN }, /temperature/],
    [{ repetitionPenalty: 0 }, /repetitionPenalty/],
    [{ noRepeatNgramSize: -2 }, /noRepeatNgramSize/],
    [{ lengthPenalty: Number.POSITIVE_INFINITY }, /lengthPenalty must be a number/],
    [{ earlyStopping: 'sometimes' }, /earlyStopping must be true, false or "never" \(got "sometimes"\)/],
    [{ doSample: 'yes' }, /doSample must be true or false/],
    [{ seed: 1.5 }, /seed/],
    [{ num_beams: 3 }, /Unknown generation option "num_beams"/],
  ])('rejects %o with a clear InputError', (bad, message) => {
    const call = () => resolveGenerationOptions('question', bad as GenerationOptions, SPECIAL);
    expect(call).toThrow(InputError);
    expect(call).toThrow(message);
  });
});

describe('TokenHistory', () => {
  it('finds ancestors like a naive walk on a random tree', () => {
    const rng = new Rng(3);
    const history = new TokenHistory(START);
    const parents = [-1];
    for (let i = 1; i < 2000; i++) {
      // Mostly extend recent nodes so the tree gets deep (up to hundreds of levels).
      const parent = rng.nextFloat() < 0.9 ? Math.max(0, i - 1 - rng.nextInt(3)) : rng.nextInt(i);
      expect(history.append(parent, rng.nextInt(50))).toBe(i);
      parents.push(parent);
    }
    const naive = (node: number, depth: number) => {
      let at = node;
      while (history.depth(at) > depth) at = parents[at]!;
      return at;
    };
    for (let trial = 0; trial < 3000; trial++) {
      const node = rng.nextInt(2000);
      const depth = rng.nextInt(history.depth(node) + 1);
      expect(history.ancestorAt(node, depth)).toBe(naive(node, depth));
    }
    expect(Math.max(...Array.from({ length: 2000 }, (_, i) => history.depth(i)))).toBeGreaterThan(100);
    expect(() => history.ancestorAt(5, history.depth(5) + 1)).toThrow(RangeError);
  });

  it('reads a row back oldest first and shares prefixes between branches', () => {
    const h = new TokenHistory(START);
    const a = h.append(h.append(h.root, 5), 6);
    const b = h.append(h.parent(a), 7);
    expect(h.tokens(a)).toEqual([0, 5, 6]);
    expect(h.tokens(b)).toEqual([0, 5, 7]);
    expect(h.lastTokens(b, 2)).toEqual([5, 7]);
    expect(h.lastTokens(b, 9)).toEqual([0, 5, 7]);
    expect(h.isOnPath(b, h.parent(a))).toBe(true);
    expect(h.isOnPath(b, a)).toBe(false);
  });
});

describe('logits processors (HF semantics)', () => {
  const historyOf = (tokens: number[]) => {
    const h = new TokenHistory(tokens[0]!);
    let node = h.root;
    for (const t of tokens.slice(1)) node = h.append(node, t);
    return { h, node };
  };

  it('repetition penalty divides positive and multiplies negative scores, once per distinct token', () => {
    const { h, node } = historyOf([0, 2, 2, 3]);
    const scores = new Float32Array([1, 5, 4, -2, 7]);
    new RepetitionPenaltyProcessor(h, 2, 5).process(scores, node);
    expect([...scores]).toEqual([0.5, 5, 2, -4, 7]);
  });

  it('no_repeat_ngram bans the token that would complete an earlier n-gram of the same row', () => {
    const { h, node } = historyOf([0, 5, 6, 7, 5]);
    const bigram = new NoRepeatNgramProcessor(h, 2);
    for (let n = 0; n <= node; n++) bigram.observe(n);
    const scores = new Float32Array(8).fill(1);
    bigram.process(scores, node);
    expect([...scores].map((s) => s === Number.NEGATIVE_INFINITY)).toEqual([
      false,
      false,
      false,
      false,
      false,
      false,
      true,
      false,
    ]);

    // A unigram ban forbids every token already present, the start token included (as HF's input_ids hold it).
    const unigram = new NoRepeatNgramProcessor(h, 1);
    for (let n = 0; n <= node; n++) unigram.observe(n);
    const all = new Float32Array(8).fill(1);
    unigram.process(all, node);
    expect([0, 5, 6, 7].every((t) => all[t] === Number.NEGATIVE_INFINITY)).toBe(true);
    expect(all[1]).toBe(1);

    // Too short for a trigram: nothing banned.
    const short = historyOf([0]);
    const trigram = new NoRepeatNgramProcessor(short.h, 3);
    trigram.observe(short.h.root);
    const untouched = new Float32Array(4).fill(1);
    trigram.process(untouched, short.node);
    expect([...untouched]).toEqual([1, 1, 1, 1]);
  });

  it('no_repeat_ngram only looks at the row’s own branch', () => {
    const h = new TokenHistory(0);
    const processor = new NoRepeatNgramProcessor(h, 2);
    processor.observe(h.root);
    const add = (parent: number, token: number) => {
      const node = h.append(parent, token);
      processor.observe(node);
      return node;
    };
    const five = add(h.root, 5);
    add(five, 6); // branch A: 0 5 6
    const other = add(add(h.root, 7), 5); // branch B: 0 7 5
    const scores = new Float32Array(8).fill(1);
    processor.process(scores, other);
    expect([...scores].every((s) => s === 1)).toBe(true); // "5 6" is only on branch A
    const again = add(add(add(five, 6), 7), 5); // 0 5 6 7 5
    processor.process(scores, again);
    expect(scores[6]).toBe(Number.NEGATIVE_INFINITY);
  });

  it('min_new_tokens suppresses </s> until enough tokens follow the start token', () => {
    const { h, node } = historyOf([0, 4, 4]);
    const scores = new Float32Array(5).fill(1);
    new MinNewTokensProcessor(h, 3, EOS).process(scores, node);
    expect(scores[EOS]).toBe(Number.NEGATIVE_INFINITY);
    const longer = h.append(node, 4);
    const later = new Float32Array(5).fill(1);
    new MinNewTokensProcessor(h, 3, EOS).process(later, longer);
    expect(later[EOS]).toBe(1);
  });

  it('temperature divides, top-k keeps ties at the edge and at least minTokensToKeep', () => {
    const t = new Float32Array([2, -4]);
    new TemperatureWarper(0.5).process(t);
    expect([...t]).toEqual([4, -8]);

    const ninf = Number.NEGATIVE_INFINITY;
    const scores = new Float32Array([1, 3, 2, 2, 0]);
    new TopKWarper(2, 1).process(scores);
    expect([...scores]).toEqual([ninf, 3, 2, 2, ninf]);
    const kept = new Float32Array([1, 3, 2, 0]);
    new TopKWarper(1, 2).process(kept);
    expect([...kept]).toEqual([ninf, 3, 2, ninf]);
    const whole = new Float32Array([1, 3]);
    new TopKWarper(5, 1).process(whole);
    expect([...whole]).toEqual([1, 3]);
  });

  it('builds warpers in HF order, keeping 2 tokens in beam sampling and 1 otherwise', () => {
    const warp = (o: ResolvedGenerationOptions) => {
      const scores = new Float32Array([3, 1, 2, 0]);
      for (const w of createLogitsWarpers(o)) w.process(scores, 0);
      return [...scores];
    };
    const ninf = Number.NEGATIVE_INFINITY;
    expect(warp(options({ doSample: true, topK: 1, temperature: 2 }))).toEqual([1.5, ninf, ninf, ninf]);
    expect(warp(options({ doSample: true, topK: 1, numBeams: 2 }))).toEqual([3, ninf, 2, ninf]);
    expect(warp(options({ doSample: true, topK: 0, topP: 0.01, numBeams: 2 }))).toEqual([3, ninf, 2, ninf]);
    expect(warp(options({ doSample: true, topK: 0 }))).toEqual([3, 1, 2, 0]);
  });

  it('kthLargest agrees with sorting', () => {
    const rng = new Rng(11);
    for (let trial = 0; trial < 50; trial++) {
      const values = new Rng(trial).fillNormal(new Float32Array(1 + rng.nextInt(300))) as Float32Array;
      const k = 1 + rng.nextInt(values.length);
      expect(kthLargest(values, k)).toBe([...values].sort((a, b) => b - a)[k - 1]);
    }
  });

  it('top-p drops the low tail whose mass is at most 1 - p, keeping at least minTokensToKeep', () => {
    const logits = () => new Float32Array([0.5, 0.3, 0.15, 0.05].map(Math.log));
    const kept = (p: number, minKeep: number) => {
      const s = logits();
      new TopPWarper(p, minKeep).process(s);
      return [...s].map((x) => x > Number.NEGATIVE_INFINITY);
    };
    expect(kept(0.75, 1)).toEqual([true, true, false, false]); // tail masses 0.05, 0.2 <= 0.25; 0.5 > 0.25
    expect(kept(0.9, 1)).toEqual([true, true, true, false]); // 0.05 <= 0.1 < 0.2
    expect(kept(0.3, 1)).toEqual([true, false, false, false]);
    expect(kept(0.3, 2)).toEqual([true, true, false, false]);
    expect(kept(1, 1)).toEqual([true, true, true, true]);
  });
});

describe('greedy decoding', () => {
  async function expectGreedy(lm: LanguageModel, vocab: number, o: ResolvedGenerationOptions) {
    const stepper = new HistoryStepper(vocab, lm);
    const result = await generateTokens(stepper, o);
    expect(result.ids).toEqual(referenceGreedy(lm, o));
    expect(result.steps).toBe(result.ids.length);
    expect(result.score).toBeUndefined();
    expect(stepper.selections).toEqual([]);
  }

  it('agrees with the reference across many cases', async () => {
    const rng = new Rng(7);
    let endedWithEos = 0;
    let banned = 0;
    for (let trial = 0; trial < 80; trial++) {
      const vocab = 5 + rng.nextInt(8);
      const lm = randomLm(vocab, 100 + trial, rng.nextFloat() * 1.5);
      const maxNewTokens = 1 + rng.nextInt(9);
      const o = options({
        maxNewTokens,
        minNewTokens: rng.nextInt(Math.min(3, maxNewTokens) + 1),
        repetitionPenalty: [1, 1.3, 3][rng.nextInt(3)]!,
        noRepeatNgramSize: [0, 1, 2, 3][rng.nextInt(4)]!,
        ignoreEos: rng.nextFloat() < 0.2,
      });
      await expectGreedy(lm, vocab, o);
      const plain = referenceGreedy(lm, { ...o, repetitionPenalty: 1, noRepeatNgramSize: 0 });
      if (plain.join() !== referenceGreedy(lm, o).join()) banned++;
      if (referenceGreedy(lm, o).at(-1) === EOS) endedWithEos++;
    }
    // The cases must exercise both stopping at </s> and processors that change the answer.
    expect(endedWithEos).toBeGreaterThan(5);
    expect(banned).toBeGreaterThan(5);
  });

  it('stops at </s> (kept in the ids), at maxNewTokens, or never early with ignoreEos', async () => {
    const lm = tableLm(4, { '0': { 2: 0.6, 1: 0.4 }, '0,2': { 1: 0.9, 3: 0.1 } });
    expect((await generateTokens(new HistoryStepper(4, lm), options())).ids).toEqual([2, 1]);
    expect((await generateTokens(new HistoryStepper(4, lm), options({ maxNewTokens: 1 }))).ids).toEqual([2]);
    const fixed = await generateTokens(
      new HistoryStepper(4, lm),
      options({ ignoreEos: true, maxNewTokens: 5 }),
    );
    expect(fixed.ids).toHaveLength(5);
    expect(fixed.ids.slice(0, 2)).toEqual([2, 1]);
    expect(fixed.steps).toBe(5);
  });

  it('min_new_tokens keeps </s> away until enough tokens are out', async () => {
    const lm = tableLm(4, {
      '0': { 1: 0.7, 2: 0.3 },
      '0,2': { 1: 0.8, 3: 0.2 },
      '0,2,3': { 1: 0.9, 2: 0.1 },
    });
    expect((await generateTokens(new HistoryStepper(4, lm), options())).ids).toEqual([1]);
    expect((await generateTokens(new HistoryStepper(4, lm), options({ minNewTokens: 2 }))).ids).toEqual([
      2, 3, 1,
    ]);
  });

  it('no_repeat_ngram stops a looping model from repeating any bigram', async () => {
    // A model that loops 2 3 4 5 2 3 4 5 ...: the successor of its last token scores 0, the rest -1.
    const vocab = 6;
    const lm: LanguageModel = (h) => {
      const last = h[h.length - 1]!;
      const out = new Float32Array(vocab).fill(-1);
      out[last < 2 ? 2 : 2 + ((last - 1) % 4)] = 0;
      out[EOS] = -3;
      return out;
    };
    const loose = await generateTokens(new HistoryStepper(vocab, lm), options({ maxNewTokens: 10 }));
    const bigrams = (ids: number[]) => ids.slice(1).map((t, i) => `${ids[i]},${t}`);
    expect(new Set(bigrams([START, ...loose.ids])).size).toBeLessThan(loose.ids.length);
    const strict = await generateTokens(
      new HistoryStepper(vocab, lm),
      options({ maxNewTokens: 10, noRepeatNgramSize: 2 }),
    );
    const seq = [START, ...strict.ids];
    expect(new Set(bigrams(seq)).size).toBe(seq.length - 1);
  });

  it('streams each token with the ids so far', async () => {
    const seen: [number, number[]][] = [];
    const lm = randomLm(9, 77);
    const result = await generateTokens(new HistoryStepper(9, lm), options({ maxNewTokens: 6 }), {
      onToken: (id, ids) => seen.push([id, ids]),
    });
    expect(seen.map(([id]) => id)).toEqual(result.ids);
    seen.forEach(([, ids], i) => {
      expect(ids).toEqual(result.ids.slice(0, i + 1));
    });
  });

  it('rejects a decoder that returns the wrong number of logits', async () => {
    const bad: DecoderStepper = { vocabSize: 4, step: async () => new Float32Array(3), selectRows: () => {} };
    await expect(generateTokens(bad, options())).rejects.toThrow(
      /returned 3 logits for 1 row\(s\); expected 4/,
    );
  });
});

describe('beam search', () => {
  async function expectBeam(lm: LanguageModel, vocab: number, o: ResolvedGenerationOptions) {
    const stepper = new HistoryStepper(vocab, lm);
    const result = await generateTokens(stepper, o);
    const reference = referenceBeamSearch(lm, o);
    expect(result.ids, JSON.stringify(o)).toEqual(reference.ids);
    expect(result.score).toBeCloseTo(reference.score, 5);
    // Step 1 runs the start row alone, then the cache is expanded to num_beams copies of it.
    expect(stepper.stepInputs[0]).toEqual([START]);
    if (result.steps > 1) expect(stepper.selections[0]).toEqual(new Array(o.numBeams).fill(0));
    for (const input of stepper.stepInputs.slice(1)) expect(input).toHaveLength(o.numBeams);
    for (const rows of stepper.selections.slice(1)) {
      expect(rows.some((r, i) => r !== i)).toBe(true); // an unchanged order is not sent to the decoder
    }
    return { result, reference };
  }

  it('matches the HF reference across beams, length penalties, early stopping modes and processors', async () => {
    const rng = new Rng(9);
    let finishedByEos = 0;
    let cutAtLimit = 0;
    let earlyStoppingMatters = 0;
    let lengthPenaltyMatters = 0;
    let stoppedEarly = 0;
    for (let trial = 0; trial < 150; trial++) {
      const vocab = 5 + rng.nextInt(10);
      const lm = randomLm(vocab, 1000 + trial, rng.nextFloat() * 2);
      const maxNewTokens = 1 + rng.nextInt(8);
      const o = options({
        numBeams: 2 + rng.nextInt(3),
        maxNewTokens,
        minNewTokens: rng.nextFloat() < 0.3 ? rng.nextInt(maxNewTokens + 1) : 0,
        lengthPenalty: [-1, 0, 1, 2, 0.5][rng.nextInt(5)]!,
        earlyStopping: ([true, false, 'never'] as const)[rng.nextInt(3)]!,
        repetitionPenalty: rng.nextFloat() < 0.3 ? 1.5 : 1,
        noRepeatNgramSize: rng.nextFloat() < 0.3 ? 2 : 0,
        ignoreEos: rng.nextFloat() < 0.1,
      });
      const { result } = await expectBeam(lm, vocab, o);
      if (result.ids.at(-1) === EOS) finishedByEos++;
      else cutAtLimit++;
      if (result.steps < o.maxNewTokens) stoppedEarly++;
      const modes = new Set(
        ([true, false, 'never'] as const).map((m) =>
          referenceBeamSearch(lm, { ...o, earlyStopping: m }).ids.join(),
        ),
      );
      if (modes.size > 1) earlyStoppingMatters++;
      const penalties = new Set(
        [-1, 0, 2].map((lp) => referenceBeamSearch(lm, { ...o, lengthPenalty: lp }).ids.join()),
      );
      if (penalties.size > 1) lengthPenaltyMatters++;
    }
    // Guard against a test that passes without exercising the interesting paths.
    expect(refStats.skippedEos).toBeGreaterThan(3);
    expect(finishedByEos).toBeGreaterThan(20);
    expect(cutAtLimit).toBeGreaterThan(20);
    expect(stoppedEarly).toBeGreaterThan(10);
    expect(earlyStoppingMatters).toBeGreaterThan(3);
    expect(lengthPenaltyMatters).toBeGreaterThan(10);
  });

  it("early stopping: agrees with the reference where HF's heuristic stops before the best answer", async () => {
    // Models where early_stopping=false (stop when the best open beam, scored at the current length, cannot beat
    // the worst finished one) loses to the exhaustive 'never': the exact stopping step decides the answer there.
    let found = 0;
    for (let seed = 0; seed < 3000 && found < 8; seed++) {
      const lm = randomLm(6, 50_000 + seed, 1.2);
      const base = options({ numBeams: 2, maxNewTokens: 7, lengthPenalty: [2, 1, 0.5][seed % 3]! });
      const answers = ([true, false, 'never'] as const).map((m) =>
        referenceBeamSearch(lm, { ...base, earlyStopping: m }),
      );
      if (answers[1]!.ids.join() === answers[2]!.ids.join()) continue;
      found++;
      for (const m of [true, false, 'never'] as const) await expectBeam(lm, 6, { ...base, earlyStopping: m });
    }
    expect(found).toBe(8);
  });

  it('length_penalty decides between a short and a long finished hypothesis', async () => {
    // Step 1: a 0.5, </s> 0.4, b 0.1 — "</s>" ranks 2nd (< num_beams) and finishes with sum log 0.4 over 1 token.
    // Step 2 after a: </s> 0.9 finishes "a </s>" with log 0.5 + log 0.9 over 2 tokens.
    const lm = tableLm(4, {
      '0': { 2: 0.5, 1: 0.4, 3: 0.1 },
      '0,2': { 1: 0.9, 2: 0.05, 3: 0.05 },
      '0,3': { 1: 0.5, 2: 0.3, 3: 0.2 },
    });
    const short = Math.log(0.4);
    const long = Math.log(0.5) + Math.log(0.9);
    for (const [lp, ids, score] of [
      [1, [2, 1], long / 2],
      [0, [2, 1], long],
      [-1, [1], short],
    ] as const) {
      const o = options({ numBeams: 2, maxNewTokens: 2, lengthPenalty: lp });
      const { result } = await expectBeam(lm, 4, o);
      expect(result.ids).toEqual(ids);
      expect(result.score).toBeCloseTo(score, 5);
    }
  });

  it('scores open beams at the length limit the same way and adds no </s>', async () => {
    const lm = tableLm(5, { '0': { 2: 0.4, 3: 0.35, 1: 0.2, 4: 0.05 } });
    const { result } = await expectBeam(lm, 5, options({ numBeams: 2, maxNewTokens: 1, lengthPenalty: 2 }));
    expect(result.ids).toEqual([2]);
    expect(result.score).toBeCloseTo(Math.log(0.4), 5);
  });

  it('reorders the decoder rows to follow the surviving beams', async () => {
    const lm = randomLm(7, 4242, 0);
    const stepper = new HistoryStepper(7, lm);
    const o = options({ numBeams: 3, maxNewTokens: 6, ignoreEos: true });
    const result = await generateTokens(stepper, o);
    expect(result.steps).toBe(6);
    expect(result.ids).toHaveLength(6);
    expect(stepper.selections[0]).toEqual([0, 0, 0]);
    // The winner continues one of the decoder's rows: every earlier token of it was fed to that row.
    const prefix = [START, ...result.ids.slice(0, -1)].join();
    expect(stepper.rows.some((row) => row.join() === prefix)).toBe(true);
    expect(result.ids).toEqual(referenceBeamSearch(lm, o).ids);
  });

  it('does not call onToken (its best open beam is provisional)', async () => {
    let calls = 0;
    await generateTokens(new HistoryStepper(6, randomLm(6, 1)), options({ numBeams: 3 }), {
      onToken: () => calls++,
    });
    expect(calls).toBe(0);
  });
});

describe('sampling', () => {
  it('draws tokens with their softmax probabilities', () => {
    const probs = [0.5, 0.25, 0.15, 0.1, 0];
    const scores = new Float32Array(probs.map(Math.log));
    const rng = new Rng(123);
    const counts = new Array(probs.length).fill(0);
    const draws = 20_000;
    for (let i = 0; i < draws; i++) counts[sampleToken(scores, rng)]++;
    probs.forEach((p, i) => {
      expect(Math.abs(counts[i] / draws - p)).toBeLessThan(0.015);
    });
    expect(counts[4]).toBe(0);
    expect(() => sampleToken(new Float32Array(3).fill(Number.NEGATIVE_INFINITY), rng)).toThrow(/no token/);
  });

  it('is reproducible for a seed and changes with the seed', async () => {
    const lm = randomLm(30, 8, 0, 0.5);
    const run = async (seed: number) =>
      (await generateTokens(new HistoryStepper(30, lm), options({ doSample: true, seed, maxNewTokens: 8 })))
        .ids;
    expect(await run(7)).toEqual(await run(7));
    const distinct = new Set<string>();
    for (let seed = 0; seed < 8; seed++) distinct.add((await run(seed)).join());
    expect(distinct.size).toBeGreaterThan(4);
  });

  it('top-k 1 and a tiny temperature both reduce to greedy', async () => {
    const lm = randomLm(20, 31, 0.2);
    const greedy = (await generateTokens(new HistoryStepper(20, lm), options({ maxNewTokens: 8 }))).ids;
    const topK1 = await generateTokens(
      new HistoryStepper(20, lm),
      options({ doSample: true, topK: 1, seed: 3 }),
    );
    expect(topK1.ids).toEqual(greedy);
    const cold = await generateTokens(
      new HistoryStepper(20, lm),
      options({ doSample: true, topK: 0, temperature: 1e-4, seed: 4 }),
    );
    expect(cold.ids).toEqual(greedy);
  });

  it('only ever samples tokens inside top-k and top-p', async () => {
    const vocab = 12;
    const lm = randomLm(vocab, 55, 0);
    for (let seed = 0; seed < 20; seed++) {
      const stepper = new HistoryStepper(vocab, lm);
      const o = options({ doSample: true, seed, topK: 3, topP: 0.8, maxNewTokens: 5, ignoreEos: true });
      const { ids } = await generateTokens(stepper, o);
      let history = [START];
      for (const id of ids) {
        const allowed = new Float32Array(lm(history));
        new TopKWarper(3, 1).process(allowed);
        new TopPWarper(0.8, 1).process(allowed);
        expect(allowed[id]).toBeGreaterThan(Number.NEGATIVE_INFINITY);
        history = [...history, id];
      }
    }
  });

  it('beam sampling is reproducible, seed-sensitive and returns a scored hypothesis', async () => {
    const lm = randomLm(25, 91, 0.5, 0.7);
    const run = (seed: number) =>
      generateTokens(
        new HistoryStepper(25, lm),
        options({ doSample: true, numBeams: 3, seed, maxNewTokens: 7 }),
      );
    const a = await run(1);
    expect((await run(1)).ids).toEqual(a.ids);
    expect(typeof a.score).toBe('number');
    const distinct = new Set<string>();
    for (let seed = 0; seed < 8; seed++) distinct.add((await run(seed)).ids.join());
    expect(distinct.size).toBeGreaterThan(2);
  });

  it('beam sampling candidates: distinct, best first, topped up when too few tokens have probability', () => {
    const ninf = Number.NEGATIVE_INFINITY;
    const flat = new Float32Array([ninf, -1, ninf, -0.5, ninf, ninf]);
    const picked = sampleCandidates(flat, 4, new Rng(1));
    expect(picked.index).toEqual([3, 1, 0, 2]);
    const dense = new Rng(2).fillNormal(new Float32Array(40)) as Float32Array;
    const many = sampleCandidates(dense, 10, new Rng(3));
    expect(new Set(many.index).size).toBe(10);
    expect(many.score).toEqual([...many.score].sort((x, y) => y - x));
  });
});

describe('abort', () => {
  it('rejects before the first step when already aborted', async () => {
    const stepper = new HistoryStepper(5, randomLm(5, 1));
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    const run = generateTokens(stepper, options(), { signal: controller.signal });
    await expect(run).rejects.toBeInstanceOf(RequestAbortedError);
    expect(stepper.stepInputs).toHaveLength(0);
  });

  it('stops between steps once aborted', async () => {
    const stepper = new HistoryStepper(9, randomLm(9, 2, -5));
    const controller = new AbortController();
    const run = generateTokens(stepper, options({ maxNewTokens: 8 }), {
      signal: controller.signal,
      onToken: (_id, ids) => {
        if (ids.length === 2) controller.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(RequestAbortedError);
    expect(stepper.stepInputs).toHaveLength(2);
  });

  it('an abort during a slow step ends beam search when the step returns', async () => {
    const stepper = new HistoryStepper(9, randomLm(9, 3, -5), 20);
    const controller = new AbortController();
    const reason = new Error('user left');
    setTimeout(() => controller.abort(reason), 30);
    const error = await generateTokens(stepper, options({ numBeams: 3, maxNewTokens: 20, ignoreEos: true }), {
      signal: controller.signal,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RequestAbortedError);
    expect((error as RequestAbortedError).cause).toBe(reason);
    expect(stepper.stepInputs.length).toBeGreaterThanOrEqual(1);
    expect(stepper.stepInputs.length).toBeLessThan(5);
  });
});

describe('BeamHypotheses', () => {
  it('keeps the best num_beams, evicting the worst (earliest on a tie)', () => {
    const hyps = new BeamHypotheses(2, 1, false, 10);
    hyps.add(10, -2, 1, true); // -2
    hyps.add(11, -4, 2, true); // -2 (tie)
    hyps.add(12, -3, 3, true); // -1: evicts node 10, the earlier of the tied -2s
    expect(hyps.hypotheses.map((h) => h.node)).toEqual([11, 12]);
    expect(hyps.best()?.node).toBe(12);
    hyps.add(13, -1.5, 1, false); // -1.5 beats -2: evicts 11
    expect(hyps.hypotheses.map((h) => h.node)).toEqual([12, 13]);
    hyps.add(14, -3, 3, false); // -1 ties the best; the later one wins
    expect(hyps.best()?.node).toBe(14);
  });

  it('decides when to stop per early_stopping mode', () => {
    const make = (mode: boolean | 'never', lp = 1) => {
      const h = new BeamHypotheses(1, lp, mode, 10);
      h.add(1, -2, 2, true); // worst = -1
      return h;
    };
    expect(new BeamHypotheses(1, 1, true, 10).isDone(-1, 3)).toBe(false); // nothing finished yet
    expect(make(true).isDone(-100, 3)).toBe(true);
    expect(make(false).isDone(-4, 3)).toBe(true); // -4 / 3 < -1
    expect(make(false).isDone(-2, 3)).toBe(false); // -2 / 3 > -1
    expect(make(false).isDone(-3, 3)).toBe(true); // -3 / 3 = -1: the length is the one passed in
    expect(make('never').isDone(-4, 3)).toBe(false); // -4 / 10 > -1: could still win at the limit
    expect(make('never').isDone(-20, 3)).toBe(true);
    // Negative lp: the bound uses the current length. worst = -2 / 2^-1 = -4.
    expect(make('never', -1).isDone(-2, 3)).toBe(true); // -2 / 3^-1 = -6 <= -4
    expect(make('never', -1).isDone(-1, 3)).toBe(false); // -3 > -4
  });
});
