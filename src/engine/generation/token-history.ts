/**
 * The tokens of every row, kept as one tree: a row is just the id of its newest node. Beam search reorders and
 * duplicates rows every step; with a tree that is a pointer copy per row instead of a copy of each history, and
 * finished hypotheses keep their node without copying anything either.
 */
export class TokenHistory {
  /** Node 0 holds the decoder start token. */
  readonly root = 0;
  private readonly tokenOf: number[] = [];
  private readonly parentOf: number[] = [];
  private readonly depthOf: number[] = [];
  // Skew-binary jump pointers (Myers 1983): one extra pointer per node makes `ancestorAt` O(log depth).
  private readonly jumpOf: number[] = [];

  constructor(startToken: number) {
    this.tokenOf.push(startToken);
    this.parentOf.push(-1);
    this.depthOf.push(0);
    this.jumpOf.push(0);
  }

  /** Adds `token` after `parent` and returns the new node. */
  append(parent: number, token: number): number {
    const node = this.tokenOf.length;
    const jump = this.jumpOf[parent]!;
    const jumpJump = this.jumpOf[jump]!;
    const parentDepth = this.depthOf[parent]!;
    const evenSpans = parentDepth - this.depthOf[jump]! === this.depthOf[jump]! - this.depthOf[jumpJump]!;
    this.tokenOf.push(token);
    this.parentOf.push(parent);
    this.depthOf.push(parentDepth + 1);
    this.jumpOf.push(evenSpans ? jumpJump : parent);
    return node;
  }

  token(node: number): number {
    return this.tokenOf[node]!;
  }

  /** -1 for the root. */
  parent(node: number): number {
    return this.parentOf[node]!;
  }

  /** Tokens after the start token up to and including `node`: the root has depth 0. */
  depth(node: number): number {
    return this.depthOf[node]!;
  }

  /** The node on `node`'s path (itself included) at `depth`. */
  ancestorAt(node: number, depth: number): number {
    if (depth < 0 || depth > this.depthOf[node]!) {
      throw new RangeError(`depth ${depth} is outside 0..${this.depthOf[node]}`);
    }
    let at = node;
    while (this.depthOf[at]! > depth) {
      const jump = this.jumpOf[at]!;
      at = this.depthOf[jump]! >= depth ? jump : this.parentOf[at]!;
    }
    return at;
  }

  /** Whether `ancestor` is on `node`'s path (a node is on its own path). */
  isOnPath(node: number, ancestor: number): boolean {
    const depth = this.depthOf[ancestor]!;
    return depth <= this.depthOf[node]! && this.ancestorAt(node, depth) === ancestor;
  }

  /** The tokens from the start token to `node`, oldest first. */
  tokens(node: number): number[] {
    const out = new Array<number>(this.depthOf[node]! + 1);
    for (let at = node; at >= 0; at = this.parentOf[at]!) out[this.depthOf[at]!] = this.tokenOf[at]!;
    return out;
  }

  /** The last `count` tokens ending at `node`, oldest first (fewer near the root). */
  lastTokens(node: number, count: number): number[] {
    const out: number[] = [];
    for (let at = node; at >= 0 && out.length < count; at = this.parentOf[at]!) out.push(this.tokenOf[at]!);
    return out.reverse();
  }
}
