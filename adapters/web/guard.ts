/**
 * Who may call the web API: the Bearer key (when one is set), the browser origin (same site, or one listed in
 * WEB_CORS_ORIGINS) and, on a key-less loopback server, the Host header (so a page on another site cannot reach
 * it through DNS rebinding).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isLoopbackHost, type WebConfig } from '../../src/config/config.js';
import { HttpError } from './http.js';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

export class RequestGuard {
  private readonly keyDigest: Buffer | undefined;
  private readonly corsOrigins: ReadonlySet<string>;

  constructor(config: Pick<WebConfig, 'apiKey' | 'corsOrigins'>) {
    this.keyDigest = config.apiKey ? digest(config.apiKey) : undefined;
    this.corsOrigins = new Set(config.corsOrigins);
  }

  get requiresKey(): boolean {
    return this.keyDigest !== undefined;
  }

  /**
   * Who is asking, for the rate limit: the key's fingerprint when keys are in use (everyone holding it shares
   * one budget), else the client's address.
   */
  clientId(req: IncomingMessage): string {
    if (this.keyDigest) return `key:${this.keyDigest.subarray(0, 6).toString('hex')}`;
    return `ip:${req.socket.remoteAddress ?? 'unknown'}`;
  }

  /** Refuses a request from a foreign origin or a rebinding host; sets CORS headers for listed origins. */
  checkOrigin(req: IncomingMessage, res: ServerResponse): void {
    if (!this.keyDigest) {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      if (!isLoopbackHost(host)) {
        throw new HttpError(
          403,
          'host_not_allowed',
          'This server only answers requests addressed to localhost or 127.0.0.1.',
        );
      }
    }
    const origin = req.headers.origin;
    if (origin === undefined || this.isSameOrigin(req, origin)) return;
    if (!this.corsOrigins.has(origin)) {
      throw new HttpError(
        403,
        'origin_not_allowed',
        `Requests from ${origin} are not allowed. List the origin in WEB_CORS_ORIGINS to allow them.`,
      );
    }
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
  }

  /** Answers a CORS preflight (OPTIONS) for a listed origin. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    this.checkOrigin(req, res);
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': 'authorization, content-type',
      'access-control-max-age': '600',
    });
    res.end();
  }

  /** Checks `Authorization: Bearer <key>` in constant time (digests of equal length are compared). */
  checkKey(req: IncomingMessage): void {
    if (!this.keyDigest) return;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    const given = digest(match?.[1]?.trim() ?? '');
    if (!match || !timingSafeEqual(given, this.keyDigest)) {
      throw new HttpError(
        401,
        'unauthorized',
        'This API needs a valid key: send "Authorization: Bearer <key>".',
        {
          'www-authenticate': 'Bearer',
        },
      );
    }
  }

  private isSameOrigin(req: IncomingMessage, origin: string): boolean {
    const host = req.headers.host;
    return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`);
  }
}
