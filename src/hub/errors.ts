/**
 * Errors of the Hub client, each meant to be printed as one line (UserFacingError: the CLI prints its message).
 * No message ever holds the token or a signed download URL: only repo ids, file names and host names.
 */
import { UserFacingError } from '../errors.js';

/** 401/403: private, gated, or a token that is refused. */
export class HubAccessError extends UserFacingError {
  override name = 'HubAccessError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super('hub.access', message);
  }
}

/** 404: the repo, the revision or a file is not there. */
export class HubNotFoundError extends UserFacingError {
  override name = 'HubNotFoundError';
  constructor(
    message: string,
    readonly what: 'repo' | 'revision' | 'file',
  ) {
    super('hub.not_found', message);
  }
}

/** No answer at all: refused connection, unknown host, timeouts, after the retries. */
export class HubUnreachableError extends UserFacingError {
  override name = 'HubUnreachableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('hub.unreachable', message, options);
  }
}

/** Any other answer the client cannot use (a 5xx that outlasted the retries, a malformed listing, …). */
export class HubResponseError extends UserFacingError {
  override name = 'HubResponseError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('hub.response', message, options);
  }
}

/** A downloaded file's bytes do not hash to the Hub's oid; the file has been removed. */
export class ChecksumMismatchError extends UserFacingError {
  override name = 'ChecksumMismatchError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('hub.checksum_mismatch', message, options);
  }
}

/** The repo holds nothing the converter can read (e.g. only pickled `.bin` weights). */
export class UnsupportedCheckpointError extends UserFacingError {
  override name = 'UnsupportedCheckpointError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('hub.unsupported_checkpoint', message, options);
  }
}
