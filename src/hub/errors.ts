/**
 * Errors of the Hub client, each meant to be printed as one line (their names are in the CLI's EXPECTED_ERRORS).
 * No message ever holds the token or a signed download URL: only repo ids, file names and host names.
 */

/** 401/403: private, gated, or a token that is refused. */
export class HubAccessError extends Error {
  override name = 'HubAccessError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** 404: the repo, the revision or a file is not there. */
export class HubNotFoundError extends Error {
  override name = 'HubNotFoundError';
  constructor(
    message: string,
    readonly what: 'repo' | 'revision' | 'file',
  ) {
    super(message);
  }
}

/** No answer at all: refused connection, unknown host, timeouts, after the retries. */
export class HubUnreachableError extends Error {
  override name = 'HubUnreachableError';
}

/** Any other answer the client cannot use (a 5xx that outlasted the retries, a malformed listing, …). */
export class HubResponseError extends Error {
  override name = 'HubResponseError';
}

/** A downloaded file's bytes do not hash to the Hub's oid; the file has been removed. */
export class ChecksumMismatchError extends Error {
  override name = 'ChecksumMismatchError';
}

/** The repo holds nothing the converter can read (e.g. only pickled `.bin` weights). */
export class UnsupportedCheckpointError extends Error {
  override name = 'UnsupportedCheckpointError';
}
