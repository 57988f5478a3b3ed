/**
 * The merged cache of `DecodeBatch` itself, over a recording graph whose "cache" holds the tokens fed so far (one
 * head, one value per position), so every padded or gathered position can be read back. The real decoders run in
 * decode-batch.test.ts; this checks the bookkeeping they rely on, and the one-at-a-time order for decoders that
 * cannot mask padding (which the current converter no longer writes).
 */
import { describe, expect, it } from 'vitest';
import { type BatchGraph, DecodeBatch, type MergedStepInput } from '../../src/engine/decode-batch.js';
import { ort } from '../../src/engine/ort.js';

const VOCAB = 3;

/** Appends each row's token to its cache; records what each step was given. */
class RecordingGraph implements BatchGraph<string> {
  readonly vocabSize = VOCAB;
  readonly steps: { rows: string[]; past: number[][]; mask: number[][] }[] = [];
  constructor(readonly canMerge: boolean) {}

  async run(input: MergedStepInput<string>) {
    const past = input.past[0]!;
    const [rows, , length] = past.dims as [number, number, number, number];
    const data = past.data as Float32Array;
    const mask = input.pastMask.data as BigInt64Array;
    const step = { rows: [] as string[], past: [] as number[][], mask: [] as number[][] };
    for (const e of input.layout) for (let r = 0; r < e.rows; r++) step.rows.push(e.member);
    const out = new Float32Array(rows * (length + 1));
    for (let r = 0; r < rows; r++) {
      const cached = [...data.subarray(r * length, (r + 1) * length)];
      step.past.push(cached);
      step.mask.push([...mask.subarray(r * (length + 1), (r + 1) * (length + 1))].map(Number));
      out.set([...cached, input.tokens[r]!], r * (length + 1));
    }
    this.steps.push(step);
    const present = new ort.Tensor('float32', out, [rows, 1, length + 1, 1]);
    return { logits: new Float32Array(rows * VOCAB), present: [present, present] };
  }
}

const emptyPast = () => {
  const t = new ort.Tensor('float32', new Float32Array(0), [1, 1, 0, 1]);
  return [t, t];
};

describe('DecodeBatch', () => {
  it('left-pads a request that joins later, masks its padding, and gathers reordered beams', async () => {
    const graph = new RecordingGraph(true);
    const batch = new DecodeBatch(graph);
    const a = batch.join({ data: 'a', past: emptyPast() });
    await a.step([5]);
    await a.step([6]);
    const b = batch.join({ data: 'b', past: emptyPast() });
    const [la, lb] = await Promise.all([a.step([7]), b.step([9])]);
    expect(la).toHaveLength(VOCAB);
    expect(lb).toHaveLength(VOCAB);
    expect(graph.steps[2]).toEqual({
      rows: ['a', 'b'],
      past: [
        [5, 6],
        [0, 0],
      ],
      mask: [
        [1, 1, 1],
        [0, 0, 1],
      ],
    });
    // a expands to two beams of its one row; b stays.
    a.selectRows([0, 0]);
    await Promise.all([a.step([8, 4]), b.step([10])]);
    expect(graph.steps[3]).toEqual({
      rows: ['a', 'a', 'b'],
      past: [
        [5, 6, 7],
        [5, 6, 7],
        [0, 0, 9],
      ],
      mask: [
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [0, 0, 1, 1],
      ],
    });
    // a's beams swap; the longest request leaving trims the padding no one needs any more.
    a.selectRows([1, 0]);
    await Promise.all([a.step([1, 2]), b.step([11])]);
    expect(graph.steps[4]!.past).toEqual([
      [5, 6, 7, 4],
      [5, 6, 7, 8],
      [0, 0, 9, 10],
    ]);
    a.leave();
    await b.step([12]);
    expect(graph.steps[5]).toEqual({ rows: ['b'], past: [[9, 10, 11]], mask: [[1, 1, 1, 1]] });
    b.leave();
    expect(batch.size).toBe(0);
    expect(batch.stats).toMatchObject({ steps: 6, largestBatch: 2, paddedSteps: 3 });
  });

  it('without a padding mask, a second request waits until the first has left', async () => {
    const graph = new RecordingGraph(false);
    const batch = new DecodeBatch(graph);
    const a = batch.join({ data: 'a', past: emptyPast() });
    const b = batch.join({ data: 'b', past: emptyPast() });
    let bDone = false;
    const bStep = b.step([9]).then(() => {
      bDone = true;
    });
    await a.step([5]);
    await a.step([6]);
    expect(bDone).toBe(false);
    a.leave();
    await bStep;
    expect(graph.steps.map((s) => s.rows)).toEqual([['a'], ['a'], ['b']]);
    expect(graph.steps[2]!.past).toEqual([[]]);
    b.leave();
  });

  it('a failed step fails every request in it; a request that left cannot step', async () => {
    const failing: BatchGraph<string> = {
      vocabSize: VOCAB,
      canMerge: true,
      run: () => Promise.reject(new Error('onnxruntime said no')),
    };
    const batch = new DecodeBatch(failing);
    const a = batch.join({ data: 'a', past: emptyPast() });
    const b = batch.join({ data: 'b', past: emptyPast() });
    const results = await Promise.allSettled([a.step([1]), b.step([2])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    await expect(a.step([1])).rejects.toThrow(/onnxruntime said no/);
    a.leave();
    b.leave();
    await expect(a.step([1])).rejects.toThrow(/left the decode batch/);
    await expect(batch.join({ data: 'c', past: emptyPast() }).step([1, 2])).rejects.toThrow(/1 rows, got 2/);
  });
});
