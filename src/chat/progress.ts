/** The signals a person sees while their request waits or runs: the typing indicator and the queue position. */
import type { Logger } from '../util/logger.js';
import { messages } from './messages.js';
import type { ChatOutput, PostedMessage } from './types.js';

/** Shows typing now and renews it every `intervalMs` until the returned function is called. */
export function keepTyping(output: ChatOutput, intervalMs: number, logger: Logger): () => void {
  const show = () => {
    output.showTyping().catch((err) => logger.debug('typing indicator failed', err));
  };
  show();
  const timer = setInterval(show, intervalMs);
  timer.unref?.();
  return () => clearInterval(timer);
}

/**
 * The "you are #N in line" message. Updates arrive synchronously from the engine's queue; they are applied one at
 * a time and coalesced, so a burst of position changes costs at most one edit in flight. Where edits are not
 * possible the position is posted once.
 */
export class QueueNotice {
  private latest: string | undefined;
  private shown: string | undefined;
  private message: PostedMessage | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  /** Told once, when the notice is first posted (scaled out, the chat core records it in the delivery ticket). */
  onPosted: ((message: PostedMessage) => void) | undefined;

  /** `posted`: a notice already shown for this request, by a front that died (the answer replaces it). */
  constructor(
    private readonly output: ChatOutput,
    private readonly logger: Logger,
    posted?: PostedMessage,
  ) {
    this.message = posted;
  }

  update(position: number): void {
    if (this.closed || !(position >= 1)) return;
    if (this.message && !this.output.canEdit) return;
    const text = messages.queued(position);
    if (text === this.latest) return;
    this.latest = text;
    this.chain = this.chain.then(() => this.apply());
  }

  private async apply(): Promise<void> {
    const text = this.latest;
    if (this.closed || text === undefined || text === this.shown) return;
    try {
      if (!this.message) {
        this.message = await this.output.send(text);
        this.onPosted?.(this.message);
      } else if (this.output.canEdit) await this.output.edit(this.message, text);
      this.shown = text;
    } catch (err) {
      this.logger.debug('queue notice failed', err);
    }
  }

  /** Stops updates; resolves to the posted notice when the answer may replace it by an edit. */
  async close(): Promise<PostedMessage | undefined> {
    this.closed = true;
    await this.chain;
    return this.output.canEdit ? this.message : undefined;
  }
}
