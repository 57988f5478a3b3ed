/**
 * HF's `BeamHypotheses` (transformers 4.40): the best `numBeams` finished sequences, each scored
 * sum(logprobs) / length ** lengthPenalty, where length counts the tokens after the start token (a `</s>`
 * included), and the test that decides whether beam search may stop.
 */

export interface Hypothesis {
  score: number;
  /** The newest node of the sequence in the `TokenHistory`, without the `</s>` that ended it. */
  node: number;
  /** Finished by `</s>` (the id is appended to the output) rather than cut at the length limit. */
  endsWithEos: boolean;
}

export class BeamHypotheses {
  // Insertion order matters: HF breaks ties by position when it evicts and when it picks the winner.
  private readonly beams: Hypothesis[] = [];
  private worstScore = 1e9;

  constructor(
    private readonly numBeams: number,
    private readonly lengthPenalty: number,
    private readonly earlyStopping: boolean | 'never',
    private readonly maxNewTokens: number,
  ) {}

  get size(): number {
    return this.beams.length;
  }

  /** The kept hypotheses in insertion order. */
  get hypotheses(): readonly Hypothesis[] {
    return this.beams;
  }

  add(node: number, sumLogprobs: number, generatedLength: number, endsWithEos: boolean): void {
    const score = sumLogprobs / generatedLength ** this.lengthPenalty;
    if (this.beams.length >= this.numBeams && !(score > this.worstScore)) return;
    this.beams.push({ score, node, endsWithEos });
    if (this.beams.length > this.numBeams) {
      // HF sorts (score, position) pairs: the lowest score goes, the earliest on a tie.
      let worst = 0;
      for (let i = 1; i < this.beams.length; i++)
        if (this.beams[i]!.score < this.beams[worst]!.score) worst = i;
      this.beams.splice(worst, 1);
      this.worstScore = Math.min(...this.beams.map((b) => b.score));
    } else {
      this.worstScore = Math.min(score, this.worstScore);
    }
  }

  /**
   * Whether no open beam can still beat the worst kept hypothesis. `bestSumLogprobs` is the best candidate
   * score of this step, `generatedLength` the tokens after the start token once this step's token is added.
   */
  isDone(bestSumLogprobs: number, generatedLength: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    // false: HF's heuristic, as if the best open beam ended now. 'never': the real bound, which for a positive
    // length penalty is reached at the length limit.
    const length =
      this.earlyStopping === 'never' && this.lengthPenalty > 0 ? this.maxNewTokens : generatedLength;
    return this.worstScore >= bestSumLogprobs / length ** this.lengthPenalty;
  }

  /** The highest score; on a tie the one added last, as HF's stable sort followed by `pop()` picks. */
  best(): Hypothesis | undefined {
    let best: Hypothesis | undefined;
    for (const beam of this.beams) if (best === undefined || beam.score >= best.score) best = beam;
    return best;
  }
}
