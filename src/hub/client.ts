/**
 * The HTTP side of the Hugging Face Hub client: one GET that follows redirects itself (so the token goes only to
 * the Hub's own origin, never to the CDN a download is redirected to), retries what is worth retrying (network
 * errors, 5xx, 429 with Retry-After) with bounded exponential backoff, and turns every other answer into one of
 * the errors in errors.ts, worded for the person at the terminal.
 *
 * Status conventions follow the real Hub (and huggingface_hub's `hf_raise_for_status`): `X-Error-Code` says
 * RepoNotFound, RevisionNotFound, EntryNotFound or GatedRepo; an anonymous request for a private or missing repo
 * gets 401, a token without access to a gated repo gets 403.
 */
import { HubAccessError, HubNotFoundError, HubResponseError, HubUnreachableError } from './errors.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface RetryPolicy {
  /** Tries per request, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A Retry-After longer than this is cut to it. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 20_000,
  maxRetryAfterMs: 60_000,
};

export interface HubClientOptions {
  /** Base URL, like HF_ENDPOINT (default https://huggingface.co). */
  endpoint?: string;
  /** Access token, like HF_TOKEN; sent as `Authorization: Bearer` to the endpoint's origin only. */
  token?: string;
  fetch?: typeof fetch;
  retry?: Partial<RetryPolicy>;
  /** Give up on a request whose response headers take longer than this (default 30 s). */
  headersTimeoutMs?: number;
  /** Told before each retry, e.g. "the Hub answered 503; retrying in 1.0 s (2/5)". */
  onRetry?: (notice: string) => void;
  sleep?: (ms: number) => Promise<void>;
}

/** What a request is for: worded into the errors. */
export interface RequestContext {
  repo: string;
  revision?: string;
  file?: string;
}

/** A 2xx response with its body unread, and a way to abort that body (idle timeouts while streaming). */
export interface HubResponse {
  response: Response;
  /** Final URL after redirects (may hold a signature: never print it, only its host). */
  url: URL;
  abort: (reason: Error) => void;
}

/** Errors from the network layer that no retry will fix: nothing listens there, or the host has no address. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND']);
const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;

class HeadersTimeout extends Error {
  override name = 'HeadersTimeout';
  code = 'ETIMEDOUT';
}

/** The errno-style code of a fetch failure (undici wraps it in `cause`, sometimes in an AggregateError). */
export function networkErrorCode(e: unknown): string | undefined {
  let cur = e as { code?: unknown; cause?: unknown; errors?: unknown[] } | undefined;
  for (let depth = 0; cur && depth < 5; depth++) {
    if (typeof cur.code === 'string') return cur.code;
    if (Array.isArray(cur.errors) && cur.errors.length > 0) {
      cur = cur.errors[0] as typeof cur;
      continue;
    }
    cur = cur.cause as typeof cur;
  }
  return undefined;
}

export class HubClient {
  readonly endpoint: URL;
  readonly hasToken: boolean;
  private readonly token: string | undefined;
  private readonly doFetch: typeof fetch;
  readonly retry: RetryPolicy;
  private readonly headersTimeoutMs: number;
  readonly onRetry: (notice: string) => void;
  readonly sleep: (ms: number) => Promise<void>;

  constructor(options: HubClientOptions = {}) {
    const base = options.endpoint?.trim() || DEFAULT_ENDPOINT;
    let endpoint: URL;
    try {
      endpoint = new URL(base.endsWith('/') ? base : `${base}/`);
    } catch {
      throw new HubResponseError(`HF_ENDPOINT is not a URL: "${base}" (e.g. https://huggingface.co)`);
    }
    if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:')
      throw new HubResponseError(`HF_ENDPOINT must be an http(s) URL, got "${endpoint.protocol}"`);
    this.endpoint = endpoint;
    this.token = options.token?.trim() || undefined;
    this.hasToken = this.token !== undefined;
    this.doFetch = options.fetch ?? fetch;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    this.onRetry = options.onRetry ?? (() => {});
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** The endpoint as people write it, without a trailing slash (for messages and @huggingface/hub's hubUrl). */
  get base(): string {
    return this.endpoint.href.replace(/\/+$/, '');
  }

  url(path: string): string {
    return new URL(path.replace(/^\/+/, ''), this.endpoint).href;
  }

  /** `{endpoint}/{repo}/resolve/{revision}/{file}`: the download URL of one file. */
  resolveUrl(repo: string, revision: string, file: string): string {
    const path = file.split('/').map(encodeURIComponent).join('/');
    return this.url(`${repo}/resolve/${encodeURIComponent(revision)}/${path}`);
  }

  /** Backoff before try `attempt + 1` (attempt counts from 1): base·2^(attempt−1), capped, with a little jitter. */
  backoffMs(attempt: number): number {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return Math.round(exp * (0.9 + 0.2 * Math.random()));
  }

  /**
   * GETs `url` and returns the first 2xx answer (206 included) with its body unread. Retries network errors,
   * 5xx and 429; throws HubAccessError, HubNotFoundError, HubUnreachableError or HubResponseError otherwise.
   */
  async get(url: string, ctx: RequestContext, headers: Record<string, string> = {}): Promise<HubResponse> {
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.retry.attempts;
      let hop: URL = new URL(url);
      try {
        const r = await this.fetchFollowing(hop, headers, (u) => {
          hop = u;
        });
        const { response } = r;
        if (response.ok) return r;
        if (RETRY_STATUSES.has(response.status) && !last) {
          const wait = this.retryAfterMs(response) ?? this.backoffMs(attempt);
          await response.body?.cancel().catch(() => {});
          this.onRetry(
            `${hop.host} answered ${response.status}; retrying in ${(wait / 1000).toFixed(1)} s (${attempt + 1}/${this.retry.attempts})`,
          );
          await this.sleep(wait);
          continue;
        }
        await response.body?.cancel().catch(() => {});
        throw this.statusError(response, ctx, hop, attempt);
      } catch (e) {
        if (e instanceof HubAccessError || e instanceof HubNotFoundError || e instanceof HubResponseError)
          throw e;
        const code = networkErrorCode(e) ?? 'network error';
        if (UNREACHABLE_CODES.has(code) || last) throw this.unreachable(hop, code, attempt);
        const wait = this.backoffMs(attempt);
        this.onRetry(
          `no answer from ${hop.host} (${code}); retrying in ${(wait / 1000).toFixed(1)} s (${attempt + 1}/${this.retry.attempts})`,
        );
        await this.sleep(wait);
      }
    }
  }

  /** A `fetch` for @huggingface/hub's helpers that goes through `get` (auth, redirects, retries, errors). */
  fetchFor(ctx: RequestContext): typeof fetch {
    return (async (input: string | URL | Request, init?: RequestInit) => {
      const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((value, key) => {
        if (key !== 'authorization') headers[key] = value;
      });
      return (await this.get(href, ctx, headers)).response;
    }) as typeof fetch;
  }

  unreachable(url: URL, code: string, tries: number): HubUnreachableError {
    const after = tries > 1 ? ` after ${tries} tries` : '';
    const where =
      url.origin === this.endpoint.origin ? `the Hub at ${this.base}` : `the download host ${url.host}`;
    return new HubUnreachableError(
      `cannot reach ${where} (${code})${after}: check your network connection, proxy or HF_ENDPOINT`,
    );
  }

  private async fetchFollowing(
    start: URL,
    headers: Record<string, string>,
    onHop: (url: URL) => void,
  ): Promise<HubResponse> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new HeadersTimeout()), this.headersTimeoutMs);
    let url = start;
    try {
      for (let hops = 0; ; hops++) {
        onHop(url);
        const sameOrigin = url.origin === this.endpoint.origin;
        const response = await this.doFetch(url, {
          headers: {
            ...headers,
            ...(sameOrigin && this.token ? { authorization: `Bearer ${this.token}` } : {}),
          },
          redirect: 'manual',
          signal: controller.signal,
        });
        const location = response.headers.get('location');
        if (!REDIRECT_STATUSES.has(response.status) || !location) {
          return { response, url, abort: (reason) => controller.abort(reason) };
        }
        await response.body?.cancel().catch(() => {});
        if (hops >= MAX_REDIRECTS)
          throw new HubResponseError(
            `too many redirects downloading from ${start.host} (more than ${MAX_REDIRECTS})`,
          );
        url = new URL(location, url);
        if (url.protocol !== 'https:' && url.protocol !== 'http:')
          throw new HubResponseError(`${start.host} redirected to an unsupported ${url.protocol} URL`);
      }
    } catch (e) {
      if (controller.signal.aborted && controller.signal.reason instanceof HeadersTimeout)
        throw controller.signal.reason;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private retryAfterMs(response: Response): number | undefined {
    const value = response.headers.get('retry-after');
    if (!value) return undefined;
    const seconds = Number(value);
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
    if (!Number.isFinite(ms)) return undefined;
    return Math.max(0, Math.min(this.retry.maxRetryAfterMs, ms));
  }

  private statusError(response: Response, ctx: RequestContext, url: URL, tries: number): Error {
    const status = response.status;
    const code = response.headers.get('x-error-code') ?? '';
    const serverMessage = (response.headers.get('x-error-message') ?? '').slice(0, 200);
    const page = `${this.base}/${ctx.repo}`;
    const tokenHelp = `set HF_TOKEN to an access token from ${this.base}/settings/tokens`;
    if (code === 'GatedRepo') {
      return this.hasToken
        ? new HubAccessError(
            `${ctx.repo} is gated and your HF_TOKEN has not been granted access yet: accept the licence on ${page} with that account, then run this again`,
            status,
          )
        : new HubAccessError(
            `${ctx.repo} is gated: accept its licence on ${page}, then ${tokenHelp} and run this again`,
            status,
          );
    }
    if (status === 401) {
      if (this.hasToken && /invalid credentials/i.test(serverMessage))
        return new HubAccessError(`the Hub refused HF_TOKEN (invalid credentials): ${tokenHelp}`, status);
      return this.hasToken
        ? new HubAccessError(
            `cannot access ${ctx.repo} with your HF_TOKEN (401): check the repo id, and that the token can read it (for a gated model, accept the licence on ${page})`,
            status,
          )
        : new HubAccessError(
            `cannot access ${ctx.repo} (401): it does not exist, or it is private or gated. For a private or gated model, ${tokenHelp} and accept the licence on ${page}`,
            status,
          );
    }
    if (status === 403) {
      return new HubAccessError(
        `access to ${ctx.repo} is forbidden (403)${this.hasToken ? ': your HF_TOKEN cannot read it (a fine-grained token needs read access to this repo)' : `: ${tokenHelp}`}, and accept the licence on ${page} if it is gated`,
        status,
      );
    }
    if (status === 404) {
      if (code === 'RevisionNotFound')
        return new HubNotFoundError(
          `revision "${ctx.revision}" not found in ${ctx.repo}: check --revision (a branch, tag or commit id)`,
          'revision',
        );
      if (code === 'EntryNotFound' || (ctx.file && code !== 'RepoNotFound'))
        return new HubNotFoundError(
          `${ctx.file ?? 'a file'} not found in ${ctx.repo} at revision "${ctx.revision}"`,
          'file',
        );
      return new HubNotFoundError(
        `model ${ctx.repo} not found on ${this.base}: check the repo id (owner/name, e.g. Salesforce/blip2-flan-t5-xl)`,
        'repo',
      );
    }
    const what = ctx.file ? `${ctx.file} of ${ctx.repo}` : ctx.repo;
    const after = tries > 1 ? ` after ${tries} tries` : '';
    const detail = serverMessage ? `: ${serverMessage}` : '';
    return new HubResponseError(
      `${url.host} answered ${status} for ${what}${after}${detail}${status >= 500 || status === 429 ? '; try again later' : ''}`,
    );
  }
}
