/**
 * Pictures that arrive over HTTP, as the chat core's `IncomingImage`: uploaded bytes, base64, `data:` URLs, and
 * remote URLs from the hosts listed in WEB_IMAGE_URL_HOSTS only, fetched from public addresses only.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { DownloadError, downloadWithCap, tooLarge } from '../../src/chat/download.js';
import type { IncomingImage } from '../../src/chat/types.js';
import { HttpError } from './http.js';

/** Declared types that say nothing about the bytes; the engine then looks at the bytes themselves. */
const UNINFORMATIVE_TYPES = new Set(['', 'application/octet-stream', 'binary/octet-stream']);

/** Bytes already in memory (an upload, base64) as an attachment the core checks like any other. */
export function bytesImage(name: string, bytes: Uint8Array, declaredType?: string): IncomingImage {
  const type = declaredType?.split(';')[0]?.trim().toLowerCase() ?? '';
  return {
    name: name || 'picture',
    ...(UNINFORMATIVE_TYPES.has(type) ? {} : { contentType: type }),
    size: bytes.byteLength,
    async download(maxBytes) {
      if (bytes.byteLength > maxBytes) throw tooLarge(name || 'the picture', maxBytes, bytes.byteLength);
      return bytes;
    },
  };
}

/** Decodes base64 (standard or URL-safe, padding optional) after checking the decoded size fits `maxBytes`. */
export function decodeBase64(text: string, maxBytes: number, name: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) {
    throw new HttpError(400, 'invalid_base64', `"${name}" is not valid base64.`);
  }
  const size = Math.floor((clean.replace(/=+$/, '').length * 3) / 4);
  if (size > maxBytes) throw tooLarge(name, maxBytes, size);
  return new Uint8Array(Buffer.from(clean, 'base64'));
}

/** A `data:<type>;base64,<data>` URL as an attachment. */
export function dataUrlImage(url: string, maxBytes: number): IncomingImage {
  const match = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/s.exec(url);
  if (!match || !/;base64$/i.test(match[2] ?? '')) {
    throw new HttpError(
      400,
      'invalid_image_url',
      'Image data URLs must look like data:image/png;base64,....',
    );
  }
  const type = match[1]!.toLowerCase();
  const name = `image.${type.split('/')[1]?.replace(/[^a-z0-9]/g, '') || 'bin'}`;
  return bytesImage(name, decodeBase64(match[3]!, maxBytes, name), type);
}

export type Resolver = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

function ipv4Private(address: string): boolean {
  const [a, b] = address.split('.').map(Number) as [number, number, number, number];
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0) ||
    (a === 198 && (b === 18 || b === 19)) ||
    a >= 224
  );
}

/** Loopback, private, link-local, shared, multicast, reserved or unspecified: nothing a URL may point us at. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return ipv4Private(address);
  if (family !== 6) return true;
  const a = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return ipv4Private(mapped[1]!);
  return (
    a === '::' ||
    a === '::1' ||
    /^f[cd]/.test(a) ||
    /^fe[89ab]/.test(a) ||
    a.startsWith('ff') ||
    a.startsWith('64:ff9b:') ||
    a.startsWith('2001:db8:') ||
    a.startsWith('::ffff:')
  );
}

export interface RemoteImageOptions {
  /** Host names allowed (WEB_IMAGE_URL_HOSTS), lower-case. */
  hosts: readonly string[];
  maxBytes: number;
  signal?: AbortSignal;
  resolver?: Resolver;
  /** Which resolved addresses are refused (default: `isPrivateAddress`); tests serving on 127.0.0.1 narrow it. */
  isBlocked?: (address: string) => boolean;
}

function notAllowed(message: string): HttpError {
  return new HttpError(400, 'image_url_not_allowed', message);
}

/** The host must be listed and every address it resolves to public; returns the address to connect to. */
async function vetHost(url: URL, options: RemoteImageOptions): Promise<{ address: string; family: number }> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw notAllowed('Only http and https image URLs can be fetched; or send the picture as a data: URL.');
  }
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (!options.hosts.includes(host)) {
    throw notAllowed(
      `I don't fetch pictures from ${host}. Send the picture as a data: URL, or ask the operator to list the ` +
        'host in WEB_IMAGE_URL_HOSTS.',
    );
  }
  let addresses: Array<{ address: string; family: number }>;
  try {
    addresses = isIP(host)
      ? [{ address: host, family: isIP(host) }]
      : await (options.resolver ?? systemResolver)(host);
  } catch (err) {
    throw new DownloadError(`I couldn't find the server ${host}.`, { cause: err });
  }
  const first = addresses[0];
  const blocked = options.isBlocked ?? isPrivateAddress;
  if (!first || addresses.some((a) => blocked(a.address))) {
    throw notAllowed(`${host} points to a private or local address, so I won't fetch pictures from it.`);
  }
  return first;
}

const MAX_REDIRECTS = 3;

/**
 * One GET whose connection goes to the vetted address (no second DNS answer can swap it for a private one), as
 * a fetch Response so `downloadWithCap` can read it with its caps. Redirects are followed here, each hop vetted.
 */
function guardedFetch(options: RemoteImageOptions): typeof fetch {
  const get = async (target: URL, hops: number, signal?: AbortSignal): Promise<Response> => {
    const pinned = await vetHost(target, options);
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = (target.protocol === 'https:' ? https : http).request(
        target,
        {
          method: 'GET',
          headers: { accept: 'image/*', 'user-agent': 'blip2-bot' },
          ...(signal ? { signal } : {}),
          lookup: ((_host: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
            if (opts?.all) callback(null, [pinned]);
            else callback(null, pinned.address, pinned.family);
          }) as never,
        },
        resolve,
      );
      request.once('error', reject);
      request.end();
    });
    const status = response.statusCode ?? 502;
    const location = response.headers.location;
    if (status >= 300 && status < 400 && location) {
      response.resume();
      if (hops >= MAX_REDIRECTS) throw new DownloadError('That image URL redirects too many times.');
      return get(new URL(location, target), hops + 1, signal);
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(response.headers)) {
      if (typeof value === 'string') headers.set(name, value);
    }
    const body = Readable.toWeb(response) as ReadableStream<Uint8Array>;
    return new Response(status === 204 || status === 304 ? null : body, { status, headers });
  };
  return ((input: string | URL, init?: RequestInit) =>
    get(new URL(String(input)), 0, init?.signal ?? undefined)) as typeof fetch;
}

/** A remote image URL as an attachment; the host checks run before the download, the caps during it. */
export async function remoteImage(url: string, options: RemoteImageOptions): Promise<IncomingImage> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HttpError(400, 'invalid_image_url', 'That image URL is not a valid URL.');
  }
  await vetHost(parsed, options);
  const last = parsed.pathname.split('/').pop() || parsed.hostname;
  let name = last;
  try {
    name = decodeURIComponent(last);
  } catch {}
  return {
    name,
    download: (maxBytes, signal) =>
      downloadWithCap(parsed.href, {
        maxBytes,
        name,
        fetch: guardedFetch(options),
        ...(signal ? { signal } : {}),
      }),
  };
}
