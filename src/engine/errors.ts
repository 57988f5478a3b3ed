/**
 * Errors the engine raises on purpose. Each is a UserFacingError: a `code` the chat core maps to a polite
 * message and a `userMessage` safe to show as it is (no paths, no stack).
 */
import { UserFacingError } from '../errors.js';

/** `expired`: an image key whose cache entry is gone (TTL, eviction); the person has to send the picture again. */
export type ImageErrorCode =
  | 'too_large'
  | 'too_many_pixels'
  | 'unsupported_type'
  | 'corrupt'
  | 'empty'
  | 'expired';

export class ImageError extends UserFacingError {
  override name = 'ImageError';
  declare readonly code: ImageErrorCode;
  constructor(code: ImageErrorCode, userMessage: string, options?: { cause?: unknown }) {
    super(code, userMessage, options);
  }
}

export class QueueFullError extends UserFacingError {
  override name = 'QueueFullError';
  constructor(readonly capacity: number) {
    super('queue_full', `queue is full (${capacity} waiting)`, {
      userMessage: 'The bot is busy right now. Please try again in a minute.',
    });
  }
}

export class RequestTimeoutError extends UserFacingError {
  override name = 'RequestTimeoutError';
  constructor(readonly timeoutMs: number) {
    super('timeout', `request timed out after ${timeoutMs} ms`, {
      userMessage: 'Sorry, that took too long and was cancelled. Please try again.',
    });
  }
}

export class RequestAbortedError extends UserFacingError {
  override name = 'RequestAbortedError';
  constructor(options?: { cause?: unknown }) {
    super('aborted', 'request aborted', { ...options, userMessage: 'The request was cancelled.' });
  }
}

export class InputError extends UserFacingError {
  override name = 'InputError';
  constructor(userMessage: string, code = 'input') {
    super(code, userMessage);
  }
}

/**
 * Scaled out: this request's answer was already handed to its person by another process (which took this front
 * for dead). Not for people: the chat core says nothing more.
 */
export class AnsweredElsewhereError extends Error {
  override name = 'AnsweredElsewhereError';
}
