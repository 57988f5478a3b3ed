/**
 * The decoding loop over an abstract decoder: greedy, sampling, beam search and beam sampling with transformers
 * 4.40 semantics. The decoder (onnxruntime with a KV cache in the engine, a table in tests) only runs one step
 * for a set of rows and reorders its cache rows; everything else happens here.
 *
 * Per step the work is the decoder call plus O(rows × vocab) for scores and selection, plus what each enabled
 * processor inherently needs. Histories are shared in a tree, so reordering beams never copies them.
 */

import { Rng } from '../../util/random.js';
import { RequestAbortedError } from '../errors.js';
import { BeamHypotheses } from './beam-hypotheses.js';
import { createLogitsProcessors, createLogitsWarpers, type LogitsProcessor } from './logits-processors.js';
import type { ResolvedGenerationOptions } from './options.js';
import { argmax, logSoftmaxInPlace, sampleCandidates, sampleToken, topCandidates } from './select.js';
import { TokenHistory } from './token-history.js';

export interface DecoderStepper {
  readonly vocabSize: number;
  /** Runs one decoder step; tokens[i] is the newest token of row i. Returns logits, rows × vocabSize. */
  step(tokens: readonly number[]): Promise<Float32Array>;
  /** Reorders / duplicates cache rows: new row i continues old row rows[i]. Called between steps. */
  selectRows(rows: readonly number[]): void;
}

export interface GenerationHooks {
  /** Checked before and after every decoder step; an abort rejects with `RequestAbortedError`. */
  signal?: AbortSignal;
  /**
   * Greedy and sampling only: called after each new token (`</s>` included) with a copy of the ids so far.
   * Beam search does not call it: its best open beam can change its earlier tokens from one step to the next
   * and need not be the answer, so there is nothing to stream that would not be taken back.
   */
  onToken?: (id: number, idsSoFar: number[]) => void;
}

export interface GenerationResult {
  /** Ids after the decoder start token, `</s>` included when produced. */
  ids: number[];
  /** Beam search only: the winning hypothesis' sum(logprobs) / length ** lengthPenalty (HF sequences_scores). */
  score?: number;
  /** Decoder steps run. */
  steps: number;
}

/** The stepper starts with one row whose next input is the decoder start token. */
export async function generateTokens(
  stepper: DecoderStepper,
  options: ResolvedGenerationOptions,
  hooks: GenerationHooks = {},
): Promise<GenerationResult> {
  return options.numBeams > 1 ? beamSearch(stepper, options, hooks) : singleRow(stepper, options, hooks);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new RequestAbortedError({ cause: signal.reason });
}

async function runStep(
  stepper: DecoderStepper,
  tokens: readonly number[],
  signal: AbortSignal | undefined,
): Promise<Float32Array> {
  throwIfAborted(signal);
  const logits = await stepper.step(tokens);
  throwIfAborted(signal);
  const expected = tokens.length * stepper.vocabSize;
  if (logits.length !== expected) {
    throw new Error(
      `decoder step returned ${logits.length} logits for ${tokens.length} row(s); expected ${expected} (vocab ${stepper.vocabSize})`,
    );
  }
  return logits;
}

function startHistory(options: ResolvedGenerationOptions, vocabSize: number) {
  const history = new TokenHistory(options.decoderStartTokenId);
  const processors = createLogitsProcessors(options, history, vocabSize);
  const warpers = options.doSample ? createLogitsWarpers(options) : [];
  const append = (parent: number, token: number): number => {
    const node = history.append(parent, token);
    for (const p of processors) p.observe?.(node);
    return node;
  };
  for (const p of processors) p.observe?.(history.root);
  return { history, processors, warpers, append };
}

function applyAll(list: readonly LogitsProcessor[], scores: Float32Array, node: number): void {
  for (const p of list) p.process(scores, node);
}

/** Greedy (argmax of the processed logits) or multinomial sampling after the warpers: one row throughout. */
async function singleRow(
  stepper: DecoderStepper,
  options: ResolvedGenerationOptions,
  hooks: GenerationHooks,
): Promise<GenerationResult> {
  const vocab = stepper.vocabSize;
  const { history, processors, warpers, append } = startHistory(options, vocab);
  const rng = options.doSample ? new Rng(options.seed, 'generation') : undefined;
  const scores = new Float32Array(vocab);
  const ids: number[] = [];
  let node = history.root;
  let steps = 0;
  while (ids.length < options.maxNewTokens) {
    const logits = await runStep(stepper, [history.token(node)], hooks.signal);
    steps++;
    scores.set(logits);
    applyAll(processors, scores, node);
    let token: number;
    if (rng) {
      applyAll(warpers, scores, node);
      token = sampleToken(scores, rng);
    } else {
      token = argmax(scores);
    }
    node = append(node, token);
    ids.push(token);
    hooks.onToken?.(token, ids.slice());
    if (token === options.eosTokenId && !options.ignoreEos) break;
  }
  return { ids, steps };
}

/**
 * HF `_beam_search` / `_beam_sample` with `BeamSearchScorer` for one sequence. HF starts with num_beams copies
 * of the start row, all but the first at -1e9 (beam sampling: all at 0); the copies give identical logits, so
 * the first step runs one row and scores it as each of the num_beams "virtual" beams, and `selectRows` expands
 * the cache afterwards.
 */
async function beamSearch(
  stepper: DecoderStepper,
  options: ResolvedGenerationOptions,
  hooks: GenerationHooks,
): Promise<GenerationResult> {
  const vocab = stepper.vocabSize;
  const beams = options.numBeams;
  const { history, processors, warpers, append } = startHistory(options, vocab);
  const rng = options.doSample ? new Rng(options.seed, 'generation') : undefined;
  const hypotheses = new BeamHypotheses(
    beams,
    options.lengthPenalty,
    options.earlyStopping,
    options.maxNewTokens,
  );
  const eos = options.ignoreEos ? -1 : options.eosTokenId;

  const beamScores = new Float32Array(beams);
  if (!rng) beamScores.fill(-1e9, 1);
  const rowScores = new Float32Array(beams * vocab);
  const flat = new Float32Array(beams * vocab);
  let rowNodes = [history.root];
  let tokens = [options.decoderStartTokenId];
  let steps = 0;

  for (let generated = 1; ; generated++) {
    const logits = await runStep(stepper, tokens, hooks.signal);
    steps++;
    const rows = rowNodes.length;
    for (let r = 0; r < rows; r++) {
      const row = rowScores.subarray(r * vocab, (r + 1) * vocab);
      row.set(logits.subarray(r * vocab, (r + 1) * vocab));
      logSoftmaxInPlace(row);
      applyAll(processors, row, rowNodes[r]!);
    }
    const rowOf = (beam: number): number => (rows === 1 ? 0 : beam);
    for (let b = 0; b < beams; b++) {
      const source = rowOf(b) * vocab;
      const base = b * vocab;
      const offset = beamScores[b]!;
      for (let v = 0; v < vocab; v++) flat[base + v] = rowScores[source + v]! + offset;
      if (rng) applyAll(warpers, flat.subarray(base, base + vocab), rowNodes[rowOf(b)]!);
    }
    const candidates = rng ? sampleCandidates(flat, 2 * beams, rng) : topCandidates(flat, 2 * beams);

    // BeamSearchScorer.process: `</s>` among the best num_beams finishes a hypothesis, later ones are dropped.
    const nextSource: number[] = [];
    const nextToken: number[] = [];
    const nextScore: number[] = [];
    for (let rank = 0; rank < candidates.index.length && nextSource.length < beams; rank++) {
      const index = candidates.index[rank]!;
      const score = candidates.score[rank]!;
      const source = rowOf(Math.floor(index / vocab));
      const token = index % vocab;
      if (token === eos) {
        if (rank < beams) hypotheses.add(rowNodes[source]!, score, generated, true);
        continue;
      }
      nextSource.push(source);
      nextToken.push(token);
      nextScore.push(score);
    }
    if (nextSource.length < beams) throw new Error(`beam search found only ${nextSource.length} open beams`);
    const done = hypotheses.isDone(candidates.score[0]!, generated);

    rowNodes = nextSource.map((source, i) => append(rowNodes[source]!, nextToken[i]!));
    beamScores.set(nextScore);
    if (done || generated >= options.maxNewTokens) {
      if (!done) {
        for (let b = 0; b < beams; b++) hypotheses.add(rowNodes[b]!, beamScores[b]!, generated, false);
      }
      const best = hypotheses.best()!;
      const ids = history.tokens(best.node).slice(1);
      if (best.endsWithEos) ids.push(options.eosTokenId);
      return { ids, score: best.score, steps };
    }
    // Rows that stay where they are need no cache copy.
    if (rows !== beams || nextSource.some((source, i) => source !== i)) stepper.selectRows(nextSource);
    tokens = nextToken;
  }
}
