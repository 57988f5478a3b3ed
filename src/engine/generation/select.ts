/**
 * Picking tokens from score rows: argmax, log-softmax, one categorical draw, and the 2×beams candidates of beam
 * search (top-k or sampled without replacement). Scores live in Float32Array rows as torch keeps them in float32.
 */

import type { Rng } from '../../util/random.js';

/** Candidates over a flattened beams × vocab score array, best first. */
export interface Candidates {
  /** Index into the flattened array: beam = floor(index / vocab), token = index % vocab. */
  index: number[];
  score: number[];
}

/** The first index of the largest score, as `torch.argmax` returns it. */
export function argmax(scores: Float32Array): number {
  let best = 0;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i]! > bestScore) {
      bestScore = scores[i]!;
      best = i;
    }
  }
  return best;
}

/** `x - max - log(sum(exp(x - max)))`, the same steps as torch's log_softmax. */
export function logSoftmaxInPlace(row: Float32Array): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const logSum = Math.log(sum);
  for (let i = 0; i < row.length; i++) row[i] = row[i]! - max - logSum;
}

/** One draw from softmax(scores); -Infinity scores can never be drawn. */
export function sampleToken(scores: Float32Array, rng: Rng): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  if (max === Number.NEGATIVE_INFINITY || Number.isNaN(max)) {
    throw new Error('cannot sample: the logits processors left no token with a finite score');
  }
  let total = 0;
  for (let i = 0; i < scores.length; i++) total += Math.exp(scores[i]! - max);
  const target = rng.nextFloat() * total;
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < scores.length; i++) {
    const weight = Math.exp(scores[i]! - max);
    if (weight === 0) continue;
    cumulative += weight;
    last = i;
    if (cumulative > target) return i;
  }
  // Rounding can leave the running sum a hair below `target`: the last live token is the right answer then.
  return last;
}

/**
 * The `count` best entries, best first; equal scores keep the lower index first. `skip` excludes indices (used
 * when sampled candidates are topped up). One pass with a sorted buffer of `count` entries.
 */
export function topCandidates(flat: Float32Array, count: number, skip?: ReadonlySet<number>): Candidates {
  const index: number[] = [];
  const score: number[] = [];
  for (let i = 0; i < flat.length; i++) {
    const s = flat[i]!;
    // Most entries lose to the current last place: test that first, it also rejects NaN.
    if (index.length === count) {
      if (!(s > score[count - 1]!)) continue;
    } else if (Number.isNaN(s)) {
      continue;
    }
    if (skip?.has(i)) continue;
    if (index.length === count) {
      index.pop();
      score.pop();
    }
    let pos = index.length;
    while (pos > 0 && score[pos - 1]! < s) pos--;
    index.splice(pos, 0, i);
    score.splice(pos, 0, s);
  }
  return { index, score };
}

/**
 * HF beam sampling: `count` draws without replacement from softmax(flat), then sorted by score. Draws use
 * exponential keys (weight / Exp(1), largest kept), which has the distribution of successive draws without
 * replacement. Where fewer than `count` entries have any probability (torch.multinomial would fail), the rest
 * are the best-scoring remaining entries.
 */
export function sampleCandidates(flat: Float32Array, count: number, rng: Rng): Candidates {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < flat.length; i++) if (flat[i]! > max) max = flat[i]!;
  const chosen: number[] = [];
  const keys: number[] = [];
  if (max > Number.NEGATIVE_INFINITY) {
    for (let i = 0; i < flat.length; i++) {
      const weight = Math.exp(flat[i]! - max);
      if (weight === 0) continue;
      const key = weight / -Math.log(1 - rng.nextFloat());
      // Keep the `count` largest keys in a small sorted buffer rather than sorting every live entry.
      if (chosen.length === count) {
        if (!(key > keys[count - 1]!)) continue;
        chosen.pop();
        keys.pop();
      }
      let pos = chosen.length;
      while (pos > 0 && keys[pos - 1]! < key) pos--;
      chosen.splice(pos, 0, i);
      keys.splice(pos, 0, key);
    }
  }
  if (chosen.length < count) {
    const extra = topCandidates(flat, count - chosen.length, new Set(chosen));
    chosen.push(...extra.index);
  }
  chosen.sort((a, b) => flat[b]! - flat[a]! || a - b);
  return { index: chosen, score: chosen.map((i) => flat[i]!) };
}
