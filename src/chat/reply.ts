import type { Logger } from '../util/logger.js';
import { QueueNotice } from './progress.js';
import { splitMessage } from './split.js';
import type { ChatOutput, PostedMessage } from './types.js';

/**
 * The one answer to one message. A queue notice posted while waiting is turned into the answer (or the error)
 * by an edit where the platform allows it, or deleted when that edit fails, so the thread is not left with a
 * stale "you are #3".
 */
export class Reply {
  readonly notice: QueueNotice;
  private finished = false;

  /** `notice`: a queue notice a dead front posted for this request, to be turned into the answer here. */
  constructor(
    private readonly output: ChatOutput,
    private readonly logger: Logger,
    notice?: PostedMessage,
  ) {
    this.notice = new QueueNotice(output, logger, notice);
  }

  get sent(): boolean {
    return this.finished;
  }

  async finish(text: string): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    const placeholder = await this.notice.close();
    const chunks = splitMessage(text, this.output.maxMessageLength);
    let first = true;
    for (const chunk of chunks) {
      if (first && placeholder) {
        try {
          await this.output.edit(placeholder, chunk);
          first = false;
          continue;
        } catch (err) {
          // The answer goes out as a new message; the "you're #3 in line" notice must not stay behind it.
          this.logger.debug(
            'could not edit the queue notice; deleting it and sending the answer instead',
            err,
          );
          await this.output
            .delete?.(placeholder)
            .catch((e) =>
              this.logger.warn(`could not delete a stale queue notice: ${(e as Error)?.message ?? e}`),
            );
        }
      }
      first = false;
      await this.output.send(chunk);
    }
  }
}
