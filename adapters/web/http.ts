/**
 * The small HTTP toolkit the web adapter needs on top of `node:http`: JSON answers, errors in one shape, and a
 * body reader that refuses too much before (Content-Length) and while (streamed bytes) reading.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UserFacingError } from '../../src/errors.js';
import { formatBytes } from '../../src/util/bytes.js';

/** An answer other than 200, with the `{ error: { code, message } }` body every API error has. */
export class HttpError extends UserFacingError {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    code: string,
    userMessage: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(code, userMessage);
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** The API's error body; the OpenAI routes add OpenAI's `type` and `param` fields. */
export function errorBody(err: HttpError, openai = false): unknown {
  return openai
    ? { error: { message: err.userMessage, type: openaiErrorType(err.status), param: null, code: err.code } }
    : { error: { code: err.code, message: err.userMessage } };
}

function openaiErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export function sendError(res: ServerResponse, err: HttpError, openai = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, errorBody(err, openai), err.headers);
}

export function tooLargeBody(maxBytes: number): HttpError {
  return new HttpError(
    413,
    'body_too_large',
    `That request is larger than the ${formatBytes(maxBytes)} I accept. Please send a smaller image.`,
    // The rest of the body is not read, so the connection cannot be reused.
    { connection: 'close' },
  );
}

/**
 * Reads the whole body, at most `maxBytes`: a larger Content-Length is refused before a byte is read, and a
 * body that grows past the cap (chunked, or lying about its length) is cut off as soon as it does.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(tooLargeBody(maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer) => {
      total += chunk.byteLength;
      if (total > maxBytes) {
        req.pause();
        finish(tooLargeBody(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish());
    req.once('error', () =>
      finish(new HttpError(400, 'body_incomplete', 'The request body did not arrive completely.')),
    );
    req.once('aborted', () =>
      finish(new HttpError(400, 'body_incomplete', 'The request body did not arrive completely.')),
    );
  });
}

/** Parses a JSON object body; anything else is a 400 with a message saying what was wrong. */
export function parseJsonObject(body: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_json', 'The request body is not valid JSON.');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new HttpError(400, 'invalid_json', 'The request body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

/** The media type of a request, lower-cased, without parameters. */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Starts a server-sent-events answer. */
export function startEventStream(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
    ...headers,
  });
  res.flushHeaders();
}

export function writeEvent(res: ServerResponse, event: string | undefined, data: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  const payload = typeof data === 'string' ? data : JSON.stringify(data);
  res.write(`${event ? `event: ${event}\n` : ''}data: ${payload}\n\n`);
}
