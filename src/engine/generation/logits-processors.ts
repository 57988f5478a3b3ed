/**
 * Logits processors and warpers with transformers 4.40 semantics, each a small object that edits one row of
 * scores in place. Rows are identified by their newest node in the shared `TokenHistory`, whose path includes
 * the decoder start token, as HF's `input_ids` do.
 */

import type { ResolvedGenerationOptions } from './options.js';
import type { TokenHistory } from './token-history.js';

export interface LogitsProcessor {
  /** Called once for each node added to the history, the start token first: for incremental bookkeeping. */
  observe?(node: number): void;
  /** Edits the scores of the row whose newest token is `node`. */
  process(scores: Float32Array, node: number): void;
}

/** HF `RepetitionPenaltyLogitsProcessor`: each distinct earlier token once, negative scores ×p, others ÷p. */
export class RepetitionPenaltyProcessor implements LogitsProcessor {
  // Per-token stamp of the last row that touched it: dedupes without clearing a set each row.
  private readonly seen: Int32Array;
  private stamp = 0;

  constructor(
    private readonly history: TokenHistory,
    private readonly penalty: number,
    vocabSize: number,
  ) {
    this.seen = new Int32Array(vocabSize);
  }

  process(scores: Float32Array, node: number): void {
    this.stamp += 1;
    // The penalty applies to every distinct token of the row, so walking the row is the processor's own cost.
    for (let at = node; at >= 0; at = this.history.parent(at)) {
      const token = this.history.token(at);
      if (token >= scores.length || this.seen[token] === this.stamp) continue;
      this.seen[token] = this.stamp;
      const score = scores[token]!;
      scores[token] = score < 0 ? score * this.penalty : score / this.penalty;
    }
  }
}

/**
 * HF `NoRepeatNGramLogitsProcessor`: a token is banned when it would complete an n-gram already in the row.
 * Instead of rebuilding each row's n-gram table every step, every n-gram is indexed once, when its last token
 * is added, by its first n-1 tokens; a lookup keeps the entries that lie on the row's own path.
 */
export class NoRepeatNgramProcessor implements LogitsProcessor {
  private readonly endsByPrefix = new Map<string, number[]>();

  constructor(
    private readonly history: TokenHistory,
    private readonly size: number,
  ) {}

  observe(node: number): void {
    if (this.history.depth(node) < this.size - 1) return;
    const parent = this.history.parent(node);
    const key = parent < 0 ? '' : this.history.lastTokens(parent, this.size - 1).join(',');
    const ends = this.endsByPrefix.get(key);
    if (ends) ends.push(node);
    else this.endsByPrefix.set(key, [node]);
  }

  process(scores: Float32Array, node: number): void {
    const length = this.history.depth(node) + 1;
    if (length + 1 < this.size) return;
    const ends = this.endsByPrefix.get(this.history.lastTokens(node, this.size - 1).join(','));
    if (!ends) return;
    for (const end of ends) {
      if (this.history.isOnPath(node, end)) scores[this.history.token(end)] = Number.NEGATIVE_INFINITY;
    }
  }
}

/** HF `MinNewTokensLengthLogitsProcessor`: `</s>` is impossible until `min` tokens follow the start token. */
export class MinNewTokensProcessor implements LogitsProcessor {
  constructor(
    private readonly history: TokenHistory,
    private readonly min: number,
    private readonly eosTokenId: number,
  ) {}

  process(scores: Float32Array, node: number): void {
    if (this.history.depth(node) < this.min && this.eosTokenId < scores.length) {
      scores[this.eosTokenId] = Number.NEGATIVE_INFINITY;
    }
  }
}

/** HF `TemperatureLogitsWarper`. */
export class TemperatureWarper implements LogitsProcessor {
  constructor(private readonly temperature: number) {}

  process(scores: Float32Array): void {
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / this.temperature;
  }
}

/** The k-th largest value (k >= 1) with a size-k min-heap: O(V log k) instead of sorting the vocabulary. */
export function kthLargest(values: Float32Array, k: number): number {
  const heap = new Float64Array(k);
  let size = 0;
  const siftDown = (start: number): void => {
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= size) return;
      const right = left + 1;
      const child = right < size && heap[right]! < heap[left]! ? right : left;
      if (heap[child]! >= heap[i]!) return;
      const tmp = heap[i]!;
      heap[i] = heap[child]!;
      heap[child] = tmp;
      i = child;
    }
  };
  for (let v = 0; v < values.length; v++) {
    const value = values[v]!;
    if (Number.isNaN(value)) continue;
    if (size < k) {
      let i = size++;
      heap[i] = value;
      while (i > 0) {
        const up = (i - 1) >> 1;
        if (heap[up]! <= heap[i]!) break;
        const tmp = heap[up]!;
        heap[up] = heap[i]!;
        heap[i] = tmp;
        i = up;
      }
    } else if (value > heap[0]!) {
      heap[0] = value;
      siftDown(0);
    }
  }
  return size < k ? Number.NEGATIVE_INFINITY : heap[0]!;
}

/** HF `TopKLogitsWarper`: keeps every token scoring at least the k-th best (ties at the edge survive). */
export class TopKWarper implements LogitsProcessor {
  constructor(
    private readonly topK: number,
    private readonly minTokensToKeep: number,
  ) {}

  process(scores: Float32Array): void {
    const k = Math.min(Math.max(this.topK, this.minTokensToKeep), scores.length);
    if (k >= scores.length) return;
    const threshold = kthLargest(scores, k);
    for (let i = 0; i < scores.length; i++) {
      if (scores[i]! < threshold) scores[i] = Number.NEGATIVE_INFINITY;
    }
  }
}

/**
 * HF `TopPLogitsWarper`: sorted ascending, a token goes when the probability mass up to and including it is at
 * most 1 - p; the best `minTokensToKeep` always stay. Only finite scores are sorted: masked tokens have zero
 * mass and are already gone, and after top-k that leaves a handful instead of the whole vocabulary.
 */
export class TopPWarper implements LogitsProcessor {
  constructor(
    private readonly topP: number,
    private readonly minTokensToKeep: number,
  ) {}

  process(scores: Float32Array): void {
    const live: number[] = [];
    for (let i = 0; i < scores.length; i++) if (scores[i]! > Number.NEGATIVE_INFINITY) live.push(i);
    if (live.length === 0) return;
    // Equal scores: the higher id counts as the larger one (torch's sort leaves that order unspecified).
    live.sort((a, b) => scores[a]! - scores[b]! || a - b);
    const max = scores[live[live.length - 1]!]!;
    let total = 0;
    for (const i of live) total += Math.exp(scores[i]! - max);
    const cutoff = 1 - this.topP;
    const removable = live.length - this.minTokensToKeep;
    let mass = 0;
    for (let rank = 0; rank < removable; rank++) {
      const i = live[rank]!;
      mass += Math.exp(scores[i]! - max) / total;
      if (mass > cutoff) break;
      scores[i] = Number.NEGATIVE_INFINITY;
    }
  }
}

/** HF's processor order (repetition penalty, n-gram ban, min new tokens), only those that do something. */
export function createLogitsProcessors(
  options: ResolvedGenerationOptions,
  history: TokenHistory,
  vocabSize: number,
): LogitsProcessor[] {
  const processors: LogitsProcessor[] = [];
  if (options.repetitionPenalty !== 1) {
    processors.push(new RepetitionPenaltyProcessor(history, options.repetitionPenalty, vocabSize));
  }
  if (options.noRepeatNgramSize > 0)
    processors.push(new NoRepeatNgramProcessor(history, options.noRepeatNgramSize));
  if (options.minNewTokens > 0) {
    processors.push(new MinNewTokensProcessor(history, options.minNewTokens, options.eosTokenId));
  }
  return processors;
}

/**
 * HF's sampling warpers in order (temperature, top-k, top-p). HF keeps at least 2 tokens in beam sampling (one
 * `</s>` plus a continuation) and 1 otherwise.
 */
export function createLogitsWarpers(options: ResolvedGenerationOptions): LogitsProcessor[] {
  const minTokensToKeep = options.numBeams > 1 ? 2 : 1;
  const warpers: LogitsProcessor[] = [];
  if (options.temperature !== 1) warpers.push(new TemperatureWarper(options.temperature));
  if (options.topK !== 0) warpers.push(new TopKWarper(options.topK, minTokensToKeep));
  if (options.topP < 1) warpers.push(new TopPWarper(options.topP, minTokensToKeep));
  return warpers;
}
