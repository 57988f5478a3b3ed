/** Comparison helpers for parity tests. */

export interface Diff {
  maxAbs: number;
  maxGolden: number;
  /** max |a − g| / max(1, max |g|): the tolerance unit the issue defines. */
  scaled: number;
  cosine: number;
}

export function compare(actual: ArrayLike<number>, golden: ArrayLike<number>): Diff {
  if (actual.length !== golden.length) throw new Error(`length ${actual.length} ≠ golden ${golden.length}`);
  let maxAbs = 0;
  let maxGolden = 0;
  let dot = 0;
  let na = 0;
  let ng = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const g = golden[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(a - g));
    maxGolden = Math.max(maxGolden, Math.abs(g));
    dot += a * g;
    na += a * a;
    ng += g * g;
  }
  return { maxAbs, maxGolden, scaled: maxAbs / Math.max(1, maxGolden), cosine: dot / Math.sqrt(na * ng) };
}
