/**
 * One HTTP request through the chat core: a `ChatOutput` that collects the core's facts instead of posting
 * messages, and the mapping from the core's polite refusals to HTTP statuses.
 */
import type { ChatCore } from '../../src/chat/core.js';
import { DownloadError } from '../../src/chat/download.js';
import { ImageError, InputError, QueueFullError } from '../../src/chat/errors.js';
import type { ChatEvent, ChatMessage, ChatOutput, PostedMessage } from '../../src/chat/types.js';
import { HttpError } from './http.js';

export type Answered = Extract<ChatEvent, { type: 'answered' }>;
type Refused = Extract<ChatEvent, { type: 'refused' }>;

export interface AskHooks {
  /** The request waits in line: 1 = next. */
  onQueued?(position: number): void;
  /** Greedy and sampled answers grow token by token (beam search answers arrive whole). */
  onToken?(textSoFar: string): void;
}

class CollectingOutput implements ChatOutput {
  readonly maxMessageLength = Number.POSITIVE_INFINITY;
  readonly canEdit = true;
  readonly usageHint = 'Choose, drop or paste a picture first, then ask about it.';
  answered: Answered | undefined;
  refused: Refused | undefined;
  private next = 1;

  constructor(
    private readonly hooks: AskHooks,
    /** Where a front that outlives this one records the answer (the thread), when there is one. */
    readonly resumeTarget?: unknown,
  ) {}

  async send(): Promise<PostedMessage> {
    return { id: String(this.next++) };
  }
  async edit(): Promise<void> {}
  async showTyping(): Promise<void> {}

  report(event: ChatEvent): void {
    if (event.type === 'queued') this.hooks.onQueued?.(event.position);
    else if (event.type === 'token') this.hooks.onToken?.(event.textSoFar);
    else if (event.type === 'answered') this.answered = event;
    else this.refused ??= event;
  }
}

const IMAGE_STATUS: Record<ImageError['code'], number> = {
  too_large: 413,
  too_many_pixels: 413,
  unsupported_type: 415,
  corrupt: 400,
  empty: 400,
  expired: 410,
};

/** The HTTP face of one of the core's refusals, with its polite message unchanged. */
export function refusalToHttp(refused: Refused): HttpError {
  const { reason, message } = refused;
  switch (reason) {
    case 'not_allowed':
      return new HttpError(403, 'not_allowed', message);
    case 'shutting_down':
      return new HttpError(503, 'shutting_down', message, { 'retry-after': '30' });
    case 'no_picture':
      return new HttpError(400, 'no_picture', message);
    case 'question_too_long':
      return new HttpError(400, 'question_too_long', message);
    case 'rate_limited':
      return new HttpError(429, 'rate_limited', message, {
        'retry-after': String(Math.max(1, Math.ceil((refused.retryAfterMs ?? 1000) / 1000))),
      });
    case 'timeout':
      return new HttpError(504, 'timeout', message);
    case 'expired':
      return new HttpError(410, 'image_expired', message);
    case 'rejected': {
      const err = refused.error;
      if (err instanceof ImageError)
        return new HttpError(IMAGE_STATUS[err.code], `image_${err.code}`, message);
      if (err instanceof QueueFullError)
        return new HttpError(503, 'queue_full', message, { 'retry-after': '30' });
      if (err instanceof InputError) return new HttpError(400, 'invalid_input', message);
      if (err instanceof DownloadError) return new HttpError(502, 'image_download_failed', message);
      if (err instanceof HttpError) return err;
      if ((err as Error | undefined)?.name === 'QueueClosedError') {
        return new HttpError(503, 'shutting_down', message, { 'retry-after': '30' });
      }
      return new HttpError(400, 'rejected', message);
    }
    default:
      return new HttpError(500, 'internal', message);
  }
}

/** Asks the core; resolves to its answer, or throws the HttpError for its refusal. */
export async function ask(
  core: ChatCore,
  message: ChatMessage,
  hooks: AskHooks = {},
  resumeTarget?: unknown,
): Promise<Answered> {
  const output = new CollectingOutput(hooks, resumeTarget);
  await core.handle(message, output);
  if (output.answered) return output.answered;
  if (output.refused) throw refusalToHttp(output.refused);
  throw new HttpError(500, 'internal', 'Sorry, something went wrong on my side. Please try again.');
}
