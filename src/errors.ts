/**
 * The one base class of errors meant for people. The CLI prints `userMessage` as one line (no stack trace), the
 * chat core answers with it, and the adapters map by `instanceof UserFacingError`, never by class name, so a new
 * error class needs nothing but `extends UserFacingError` (or a subclass) to be shown politely everywhere.
 *
 * Anything else that escapes is a bug: the CLI prints "unexpected error" with its stack, the chat core a generic
 * apology.
 */
export class UserFacingError extends Error {
  /**
   * Stable, machine-readable identifier (`image.too_large`, `usage`, `checkpoint.missing_tensor`, …): tests,
   * logs and JSON output may rely on it; the wording of `message` may change.
   */
  readonly code: string;
  /** Safe to show as it is: one or a few lines, no stack. Defaults to `message`. */
  readonly userMessage: string;

  constructor(code: string, message: string, options?: { cause?: unknown; userMessage?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.userMessage = options?.userMessage ?? message;
  }
}

export function isUserFacing(error: unknown): error is UserFacingError {
  return error instanceof UserFacingError;
}
