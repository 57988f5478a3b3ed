/**
 * Decoding several requests in one decoder batch. A decoder step streams all of the language model's weights
 * whether it computes 1 row or 40, so the decode steps of the requests in flight (and their beams) run as one
 * merged step: each request keeps its own generation loop (generation/generate.ts) over a `BatchMember`, whose
 * `step` resolves when the merged step that includes its rows has run. A step runs once every member has asked
 * for its next one; a request joins or leaves between steps.
 *
 * Rows of different requests have different numbers of cached positions: the merged cache is left-padded to the
 * longest and the padding masked per row (FlanT5's `decoder_attention_mask`, OPT's `attention_mask`). Neither
 * model sees the padding: T5's relative position bias depends only on key − query distance, OPT's positions come
 * from the mask's cumulative sum. So each request's logits are those of decoding it alone, up to the float
 * rounding of a larger matrix product.
 */

import type { DecoderStepper } from './generation/generate.js';
import { ort } from './ort.js';

/** One request's rows in a merged step, in batch order. */
export interface LayoutEntry<M> {
  readonly member: M;
  readonly rows: number;
}

export interface MergedStepInput<M> {
  /** The newest token of every row. */
  tokens: readonly number[];
  /** The merged self-attention cache, [rows, heads, P, head_dim] each, left-padded per request. */
  past: readonly ort.Tensor[];
  /** int64 [rows, P + 1]: 0 over each row's padding, 1 over its real cached positions and the new one. */
  pastMask: ort.Tensor;
  layout: readonly LayoutEntry<M>[];
  /** False when the layout (requests and their row counts) is the previous step's. */
  layoutChanged: boolean;
}

/** The model-specific half of a merged step: FlanT5's or OPT's decoder graph (model.ts). */
export interface BatchGraph<M> {
  readonly vocabSize: number;
  /**
   * Whether rows of different past lengths may share a step. Decoders converted before the self-attention mask
   * existed cannot: their requests then decode one at a time, in the order they joined.
   */
  readonly canMerge: boolean;
  run(input: MergedStepInput<M>): Promise<{ logits: Float32Array; present: ort.Tensor[] }>;
  /** No request is left: drop what was kept for the last layout (FlanT5's tiled cross K/V). */
  idle?(): void;
}

/** What a request brings to the batch after its prompt was encoded. */
export interface JoinState<M> {
  /** Model-specific data the graph needs per request (FlanT5: its cross K/V and encoder mask). */
  data: M;
  /** The request's own cache before its first merged step ([1, heads, P0, head_dim] each; P0 = 0 for FlanT5). */
  past: readonly ort.Tensor[];
  /** OPT: the prefill's logits answer the first step without running the graph. */
  firstLogits?: Float32Array;
}

interface Pending {
  tokens: readonly number[];
  resolve(logits: Float32Array): void;
  reject(error: unknown): void;
}

/** A request's view of the batch: a `DecoderStepper` for the generation loop, and `leave()` when it is done. */
export class BatchMember<M> implements DecoderStepper {
  readonly vocabSize: number;
  /** Rows this request has in the cache (1 until beams expand it). */
  rows = 1;
  /** Real cached positions of every row of this request. */
  pastLength: number;
  /** The request's own cache until its first merged step; afterwards its rows live in the batch's cache. */
  own: readonly ort.Tensor[] | undefined;
  /** First row of this request in the batch's cache. */
  offset = -1;
  pendingRows: readonly number[] | undefined;
  pending: Pending | undefined;
  firstLogits: Float32Array | undefined;
  failure: unknown;
  left = false;

  constructor(
    private readonly batch: DecodeBatch<M>,
    readonly data: M,
    state: JoinState<M>,
  ) {
    this.vocabSize = batch.graph.vocabSize;
    this.own = state.past;
    this.pastLength = state.past[0]?.dims[2] ?? 0;
    this.firstLogits = state.firstLogits;
  }

  selectRows(rows: readonly number[]): void {
    // Successive reorders compose (the second indexes the rows the first produced).
    const before = this.pendingRows;
    this.pendingRows = before ? rows.map((r) => before[r]!) : rows;
  }

  step(tokens: readonly number[]): Promise<Float32Array> {
    if (this.left) return Promise.reject(new Error('this request has left the decode batch'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error('a decoder step is already pending for this request'));
    const rows = this.pendingRows?.length ?? this.rows;
    if (tokens.length !== rows) {
      return Promise.reject(new Error(`decoder has ${rows} rows, got ${tokens.length} tokens`));
    }
    if (this.firstLogits) {
      const logits = this.firstLogits;
      this.firstLogits = undefined;
      return Promise.resolve(logits);
    }
    return new Promise((resolve, reject) => {
      this.pending = { tokens, resolve, reject };
      this.batch.schedule();
    });
  }

  /** The request is done (answered, failed or aborted): its rows leave the cache at the next step. */
  leave(): void {
    if (this.left) return;
    this.left = true;
    this.batch.remove(this);
  }
}

/** The merged cache of the requests in flight and the loop that runs their steps together. */
export class DecodeBatch<M> {
  readonly #active: BatchMember<M>[] = [];
  /** Requests that wait for their turn when the graph cannot merge rows of different lengths. */
  readonly #waiting: BatchMember<M>[] = [];
  #past: ort.Tensor[] | undefined;
  /** Positions in `#past` (real ones of its longest request; padding for the others). */
  #pastLength = 0;
  #layout: LayoutEntry<BatchMember<M>>[] = [];
  #running = false;
  /** Merged steps run and rows they computed, for tests and benchmarks. */
  readonly stats = { steps: 0, rows: 0, largestBatch: 0, paddedSteps: 0 };

  constructor(readonly graph: BatchGraph<M>) {}

  /** Requests currently decoding (not counting those waiting for a graph that cannot merge). */
  get size(): number {
    return this.#active.length;
  }

  join(state: JoinState<M>): BatchMember<M> {
    const member = new BatchMember(this, state.data, state);
    if (this.graph.canMerge || this.#active.length === 0) this.#active.push(member);
    else this.#waiting.push(member);
    return member;
  }

  /** @internal called by `BatchMember.leave` */
  remove(member: BatchMember<M>): void {
    const waiting = this.#waiting.indexOf(member);
    if (waiting >= 0) this.#waiting.splice(waiting, 1);
    const index = this.#active.indexOf(member);
    if (index >= 0) this.#active.splice(index, 1);
    member.pending?.reject(new Error('this request has left the decode batch'));
    member.pending = undefined;
    if (this.#active.length === 0) {
      // Nothing left to continue: free the cache, and let the next request in (unmergeable graphs).
      this.#past = undefined;
      this.#pastLength = 0;
      this.#layout = [];
      this.graph.idle?.();
      const next = this.#waiting.shift();
      if (next) this.#active.push(next);
    }
    this.schedule();
  }

  /** Runs the next merged step once every active request has asked for it. */
  schedule(): void {
    if (this.#running || this.#active.length === 0) return;
    if (!this.#active.every((m) => m.pending)) return;
    this.#running = true;
    void this.#runStep().finally(() => {
      this.#running = false;
      this.schedule();
    });
  }

  async #runStep(): Promise<void> {
    const members = [...this.#active];
    const pendings = members.map((m) => m.pending!);
    for (const m of members) m.pending = undefined;
    try {
      const layout = members.map((m) => ({ member: m, rows: m.pendingRows?.length ?? m.rows }));
      const sources = members.map((m) => m.pendingRows ?? identity(m.rows));
      const pastLength = Math.max(...members.map((m) => m.pastLength));
      const sameLayout =
        layout.length === this.#layout.length &&
        layout.every((e, i) => e.member === this.#layout[i]!.member && e.rows === this.#layout[i]!.rows);
      const reuse =
        this.#past !== undefined &&
        sameLayout &&
        pastLength === this.#pastLength &&
        members.every((m, i) => m.own === undefined && isIdentity(sources[i]!, m.rows));
      const past = reuse ? this.#past! : this.#gatherPast(members, sources, pastLength);
      const rows = layout.reduce((sum, e) => sum + e.rows, 0);
      const mask = new BigInt64Array(rows * (pastLength + 1));
      let row = 0;
      for (const [i, m] of members.entries()) {
        for (let r = 0; r < layout[i]!.rows; r++, row++) {
          mask.fill(1n, row * (pastLength + 1) + (pastLength - m.pastLength), (row + 1) * (pastLength + 1));
        }
      }
      const out = await this.graph.run({
        tokens: pendings.flatMap((p) => p.tokens),
        past,
        pastMask: new ort.Tensor('int64', mask, [rows, pastLength + 1]),
        layout: layout.map((e) => ({ member: e.member.data, rows: e.rows })),
        layoutChanged: !sameLayout,
      });
      this.#past = out.present;
      this.#pastLength = pastLength + 1;
      this.#layout = layout;
      this.stats.steps++;
      this.stats.rows += rows;
      this.stats.largestBatch = Math.max(this.stats.largestBatch, members.length);
      if (members.some((m) => m.pastLength !== pastLength)) this.stats.paddedSteps++;
      const vocab = this.graph.vocabSize;
      let offset = 0;
      for (const [i, m] of members.entries()) {
        m.rows = layout[i]!.rows;
        m.offset = offset;
        m.own = undefined;
        m.pendingRows = undefined;
        m.pastLength++;
        pendings[i]!.resolve(out.logits.subarray(offset * vocab, (offset + m.rows) * vocab));
        offset += m.rows;
      }
    } catch (error) {
      // The merged cache may be half-updated: every request in this step fails (each gets the error).
      this.#past = undefined;
      this.#pastLength = 0;
      this.#layout = [];
      for (const [i, m] of members.entries()) {
        m.failure = error;
        pendings[i]!.reject(error);
      }
    }
  }

  /**
   * A new merged cache [rows, heads, pastLength, head_dim] per tensor: each new row copies the real positions of
   * its source row (from the batch's cache, or from the request's own before its first step) to the right end.
   */
  #gatherPast(
    members: readonly BatchMember<M>[],
    sources: readonly (readonly number[])[],
    pastLength: number,
  ): ort.Tensor[] {
    const template = members[0]!.own ?? this.#past!;
    const rows = sources.reduce((sum, s) => sum + s.length, 0);
    return template.map((_, t) => {
      const [, heads, , headDim] = template[t]!.dims as [number, number, number, number];
      const out = new Float32Array(rows * heads * pastLength * headDim);
      let row = 0;
      for (const [i, m] of members.entries()) {
        const from = m.own ? m.own[t]! : this.#past![t]!;
        const base = m.own ? 0 : m.offset;
        const fromLength = from.dims[2]!;
        const data = from.data as Float32Array;
        const span = m.pastLength * headDim;
        for (const source of sources[i]!) {
          for (let h = 0; h < heads; h++) {
            const src = (((base + source) * heads + h) * fromLength + (fromLength - m.pastLength)) * headDim;
            const dst = ((row * heads + h) * pastLength + (pastLength - m.pastLength)) * headDim;
            out.set(data.subarray(src, src + span), dst);
          }
          row++;
        }
      }
      return new ort.Tensor('float32', out, [rows, heads, pastLength, headDim]);
    });
  }
}

function identity(rows: number): number[] {
  return Array.from({ length: rows }, (_, i) => i);
}

function isIdentity(rows: readonly number[], count: number): boolean {
  return rows.length === count && rows.every((r, i) => r === i);
}
