/**
 * Attachment checks and a capped download, shared by the adapters: the declared type and size are checked before
 * any byte is fetched, and the download stops as soon as the cap is passed.
 */

import { ImageError } from '../engine/errors.js';
import { UserFacingError } from '../errors.js';
import { concatChunks, formatBytes } from '../util/bytes.js';
import type { IncomingImage } from './types.js';

/** A download that failed for a reason other than the image itself (network, HTTP status). */
export class DownloadError extends UserFacingError {
  override name = 'DownloadError';
  constructor(userMessage: string, options?: { cause?: unknown }) {
    super('download', userMessage, options);
  }
}

export function tooLarge(name: string, maxBytes: number, size?: number): ImageError {
  const what = size === undefined ? `"${name}" is larger` : `"${name}" is ${formatBytes(size)}, larger`;
  return new ImageError(
    'too_large',
    `${what} than the ${formatBytes(maxBytes)} I accept. Please send a smaller image.`,
  );
}

const NON_IMAGE_EXTENSIONS =
  /\.(txt|md|pdf|docx?|xlsx?|pptx?|zip|gz|tar|7z|rar|json|csv|html?|js|ts|py|mp4|mov|webm|mkv|mp3|wav|ogg|exe)$/i;

/** The declared facts say this attachment cannot be used: returns the reason, or undefined to go ahead. */
export function checkDeclared(image: IncomingImage, maxBytes: number): ImageError | undefined {
  const type = image.contentType?.split(';')[0]?.trim().toLowerCase();
  const notImage = type ? !type.startsWith('image/') : NON_IMAGE_EXTENSIONS.test(image.name);
  if (notImage) {
    const declared = type ? ` (${type})` : '';
    return new ImageError(
      'unsupported_type',
      `"${image.name}"${declared} is not a picture. Please send a PNG, JPEG, WebP or GIF image.`,
    );
  }
  if (image.size !== undefined && image.size > maxBytes) return tooLarge(image.name, maxBytes, image.size);
  return undefined;
}

export interface DownloadOptions {
  maxBytes: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** File name for messages. */
  name?: string;
  fetch?: typeof fetch;
  /** A platform's own wording for a failure (Slack: what to fix in the app's scopes); default: generic. */
  failures?: DownloadFailures;
}

export interface DownloadFailures {
  /** The request did not complete (network, DNS). */
  unreachable?: (cause: unknown) => Error;
  /** The server answered with an error status. */
  refused?: (status: number) => Error;
  /** A web page (text/html) came back instead of the file: a sign-in page, usually. */
  webPage?: () => Error;
}

/** GETs `url`, refusing bodies over `maxBytes` (by Content-Length first, then while streaming). */
export async function downloadWithCap(url: string, options: DownloadOptions): Promise<Uint8Array> {
  const name = options.name ?? 'the image';
  const doFetch = options.fetch ?? fetch;
  let response: Response;
  try {
    response = await doFetch(url, {
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      redirect: 'follow',
    });
  } catch (err) {
    // An injected fetch may refuse with its own polite reason (the web adapter's URL checks): keep it.
    const ownMessage = err instanceof UserFacingError;
    if (options.signal?.aborted || ownMessage) throw err;
    throw (
      options.failures?.unreachable?.(err) ??
      new DownloadError(`I couldn't download "${name}". Please try sending it again.`, { cause: err })
    );
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw (
      options.failures?.refused?.(response.status) ??
      new DownloadError(
        `I couldn't download "${name}" (the server answered ${response.status}). Please try sending it again.`,
      )
    );
  }
  const type = response.headers.get('content-type')?.toLowerCase() ?? '';
  if (type.startsWith('text/html')) {
    await response.body?.cancel().catch(() => {});
    throw (
      options.failures?.webPage?.() ??
      new ImageError('unsupported_type', `I got a web page instead of "${name}", so I can't look at it.`)
    );
  }
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw tooLarge(name, options.maxBytes, declared);
  }
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  return readCapped(response.body, options.maxBytes, () => tooLarge(name, options.maxBytes));
}

/** Reads a response body, cancelling it with `onTooLarge()` as soon as more than `maxBytes` arrive. */
async function readCapped(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  onTooLarge: () => Error,
): Promise<Uint8Array> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw onTooLarge();
    }
    chunks.push(value);
  }
  return concatChunks(chunks);
}
