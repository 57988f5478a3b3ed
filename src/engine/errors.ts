/**
 * Errors the engine raises on purpose. Each carries a `code` the chat core maps to a polite message and a
 * `userMessage` safe to show as it is (no paths, no stack).
 */

/** `expired`: an image key whose cache entry is gone (TTL, eviction); the person has to send the picture again. */
export type ImageErrorCode =
  | 'too_large'
  | 'too_many_pixels'
  | 'unsupported_type'
  | 'corrupt'
  | 'empty'
  | 'expired';

export class ImageError extends Error {
  override name = 'ImageError';
  constructor(
    readonly code: ImageErrorCode,
    readonly userMessage: string,
    options?: { cause?: unknown },
  ) {
    super(userMessage, options);
  }
}

export class QueueFullError extends Error {
  override name = 'QueueFullError';
  readonly userMessage = 'The bot is busy right now. Please try again in a minute.';
  constructor(readonly capacity: number) {
    super(`queue is full (${capacity} waiting)`);
  }
}

export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError';
  readonly userMessage = 'Sorry, that took too long and was cancelled. Please try again.';
  constructor(readonly timeoutMs: number) {
    super(`request timed out after ${timeoutMs} ms`);
  }
}

export class RequestAbortedError extends Error {
  override name = 'RequestAbortedError';
  readonly userMessage = 'The request was cancelled.';
  constructor(options?: { cause?: unknown }) {
    super('request aborted', options);
  }
}

export class InputError extends Error {
  override name = 'InputError';
  constructor(readonly userMessage: string) {
    super(userMessage);
  }
}
