/**
 * A local stand-in for Slack, for tests on 127.0.0.1: the Web API methods the bot calls (recorded, token checked),
 * private file downloads that answer an HTML sign-in page without the right bearer token (as Slack does),
 * response_url endpoints, and the Socket Mode WebSocket (hello, envelopes, acks).
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

export interface SlackEmulatorOptions {
  botToken: string;
  appToken?: string;
  teamId?: string;
  teamName?: string;
  botUserId?: string;
  botId?: string;
  botName?: string;
}

export interface ApiCall {
  method: string;
  args: Record<string, unknown>;
  /** Bearer token the call carried (tests assert on it; never printed). */
  token: string | undefined;
  at: number;
}

export interface PostedSlackMessage {
  channel: string;
  ts: string;
  threadTs?: string;
  text: string;
  edits: string[];
}

/** A file as Slack describes it in events. */
export interface EmulatedFile {
  id: string;
  name: string;
  title: string;
  mimetype: string;
  filetype: string;
  size: number;
  mode: 'hosted';
  url_private: string;
  url_private_download: string;
}

export interface FileSpec {
  name: string;
  mimetype: string;
  bytes: Uint8Array;
  /** 'login-page': always answer the sign-in page, as Slack does when the token lacks files:read. */
  serve?: 'file' | 'login-page';
  /** Size announced in the event, when it should differ from the real one. */
  declaredSize?: number;
  /** Send the bytes without Content-Length (chunked), so only counting while reading can stop a big file. */
  chunked?: boolean;
}

export interface FileFetch {
  fileId: string;
  authorized: boolean;
  served: 'file' | 'login-page';
}

interface StoredFile extends EmulatedFile {
  bytes: Uint8Array;
  serve: 'file' | 'login-page';
  chunked: boolean;
}

const LOGIN_PAGE = `<!DOCTYPE html>
<html lang="en-US"><head><meta charset="utf-8"><title>Slack</title></head>
<body><h1>Sign in to your workspace</h1><form action="/signin" method="post"><input name="email"></form></body></html>
`;

function json(res: ServerResponse, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** WebClient posts form fields, with objects as JSON strings; some clients post JSON. */
function parseArgs(body: string, contentType: string | undefined): Record<string, unknown> {
  if (!body) return {};
  if (contentType?.includes('application/json')) return JSON.parse(body) as Record<string, unknown>;
  const args: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(body)) {
    if (/^[[{]/.test(value)) {
      try {
        args[key] = JSON.parse(value);
        continue;
      } catch {
        // a plain string that happens to start with a bracket
      }
    }
    args[key] = value;
  }
  return args;
}

function bearer(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  return header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
}

export class SlackEmulator {
  readonly calls: ApiCall[] = [];
  readonly messages: PostedSlackMessage[] = [];
  readonly fileFetches: FileFetch[] = [];
  /** Bodies POSTed to response_url endpoints, by id. */
  readonly responses: { id: string; body: Record<string, unknown> }[] = [];
  /** Web API methods answering HTTP 429 with Retry-After (seconds) for their next `times` calls. */
  readonly rateLimits = new Map<string, { times: number; retryAfter: number }>();
  /** Channels where chat.postMessage answers not_in_channel. */
  readonly notInChannel = new Set<string>();
  readonly teamId: string;
  readonly botUserId: string;
  readonly botId: string;

  readonly #options: SlackEmulatorOptions;
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  readonly #files = new Map<string, StoredFile>();
  readonly #reactions = new Set<string>();
  readonly #changed = new EventEmitter();
  readonly #sockets = new Set<WebSocket>();
  readonly #pendingAcks = new Map<string, (payload: unknown) => void>();
  #tsCounter = 0;
  #idCounter = 0;
  #port = 0;

  private constructor(options: SlackEmulatorOptions) {
    this.#options = options;
    this.teamId = options.teamId ?? 'T0EMULATOR';
    this.botUserId = options.botUserId ?? 'U0BLIP2BOT';
    this.botId = options.botId ?? 'B0BLIP2BOT';
    this.#changed.setMaxListeners(0);
    this.#server = createServer((req, res) => {
      this.#route(req, res).catch((error: unknown) => {
        if (!res.headersSent) json(res, { ok: false, error: 'internal_error', detail: String(error) }, 500);
        else res.end();
      });
    });
    this.#wss = new WebSocketServer({ noServer: true });
    this.#server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/socket' || url.searchParams.get('ticket') !== 'emulator-ticket') {
        socket.destroy();
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#acceptSocket(ws));
    });
  }

  static async start(options: SlackEmulatorOptions): Promise<SlackEmulator> {
    const emulator = new SlackEmulator(options);
    await new Promise<void>((resolve, reject) => {
      emulator.#server.once('error', reject);
      emulator.#server.listen(0, '127.0.0.1', () => resolve());
    });
    emulator.#port = (emulator.#server.address() as AddressInfo).port;
    return emulator;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** What SLACK_API_URL is set to. */
  get apiUrl(): string {
    return `${this.baseUrl}/api/`;
  }

  /** Registers a file and returns the object events carry for it. */
  addFile(spec: FileSpec): EmulatedFile {
    this.#idCounter += 1;
    const id = `F${String(this.#idCounter).padStart(8, '0')}`;
    const url = `${this.baseUrl}/files-pri/${this.teamId}-${id}/${encodeURIComponent(spec.name)}`;
    const file: StoredFile = {
      id,
      name: spec.name,
      title: spec.name,
      mimetype: spec.mimetype,
      filetype: spec.name.split('.').pop()?.toLowerCase() ?? 'binary',
      size: spec.declaredSize ?? spec.bytes.byteLength,
      mode: 'hosted',
      url_private: url,
      url_private_download: `${url}?download=1`,
      bytes: spec.bytes,
      serve: spec.serve ?? 'file',
      chunked: spec.chunked ?? false,
    };
    this.#files.set(id, file);
    const { bytes: _bytes, serve: _serve, chunked: _chunked, ...described } = file;
    return described;
  }

  /** A fresh response_url for a slash command or shortcut payload. */
  responseUrl(): string {
    this.#idCounter += 1;
    return `${this.baseUrl}/response/R${this.#idCounter}`;
  }

  /** A new message timestamp, later than every earlier one. */
  nextTs(): string {
    this.#tsCounter += 1;
    return `${1_760_000_000 + this.#tsCounter}.${String(this.#tsCounter * 100).padStart(6, '0')}`;
  }

  callsTo(method: string): ApiCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  /** Messages the bot posted into one thread (or top level of a channel when threadTs is undefined). */
  messagesIn(channel: string, threadTs?: string): PostedSlackMessage[] {
    return this.messages.filter((m) => m.channel === channel && m.threadTs === threadTs);
  }

  /** Resolves with `check()`'s first defined result, re-checking after every recorded change. */
  waitFor<T>(check: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const attempt = () => {
        const result = check();
        if (result === undefined || result === false) return false;
        this.#changed.off('change', attempt);
        clearTimeout(timer);
        resolve(result);
        return true;
      };
      const timer = setTimeout(() => {
        this.#changed.off('change', attempt);
        const recent = this.calls
          .slice(-8)
          .map((c) => `${c.method} ${JSON.stringify(c.args).slice(0, 160)}`)
          .join('\n  ');
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last calls:\n  ${recent}`));
      }, timeoutMs);
      if (!attempt()) this.#changed.on('change', attempt);
    });
  }

  /** Waits until `thread` holds `count` bot messages whose (final) text passes `accept`. */
  waitForReplies(
    channel: string,
    threadTs: string | undefined,
    count: number,
    accept: (text: string) => boolean = () => true,
    timeoutMs?: number,
  ): Promise<PostedSlackMessage[]> {
    return this.waitFor(
      () => {
        const found = this.messagesIn(channel, threadTs).filter((m) => accept(m.text));
        return found.length >= count ? found : undefined;
      },
      `${count} matching repl${count === 1 ? 'y' : 'ies'} in ${channel}/${threadTs ?? 'top level'}`,
      timeoutMs,
    );
  }

  // ---- Socket Mode ----

  get socketConnections(): number {
    return this.#sockets.size;
  }

  /** Sends an envelope over every open socket (there is one in tests) and resolves with the app's ack payload. */
  sendEnvelope(
    type: 'events_api' | 'slash_commands' | 'interactive',
    payload: Record<string, unknown>,
    options: { retryAttempt?: number; retryReason?: string; timeoutMs?: number } = {},
  ): Promise<unknown> {
    const [socket] = this.#sockets;
    if (!socket) return Promise.reject(new Error('no Socket Mode connection is open'));
    this.#idCounter += 1;
    const envelopeId = `env-${this.#idCounter}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pendingAcks.delete(envelopeId);
        reject(new Error(`envelope ${envelopeId} (${type}) was not acknowledged`));
      }, options.timeoutMs ?? 5000);
      this.#pendingAcks.set(envelopeId, (ack) => {
        clearTimeout(timer);
        resolve(ack);
      });
      socket.send(
        JSON.stringify({
          envelope_id: envelopeId,
          type,
          payload,
          accepts_response_payload: type !== 'events_api',
          retry_attempt: options.retryAttempt ?? 0,
          retry_reason: options.retryReason ?? '',
        }),
      );
    });
  }

  #acceptSocket(ws: WebSocket): void {
    this.#sockets.add(ws);
    ws.on('close', () => {
      this.#sockets.delete(ws);
      this.#emitChange();
    });
    ws.on('message', (data) => {
      let message: { envelope_id?: string; payload?: unknown };
      try {
        message = JSON.parse(String(data)) as typeof message;
      } catch {
        return;
      }
      const resolve = message.envelope_id ? this.#pendingAcks.get(message.envelope_id) : undefined;
      if (message.envelope_id && resolve) {
        this.#pendingAcks.delete(message.envelope_id);
        resolve(message.payload ?? {});
      }
    });
    ws.send(
      JSON.stringify({
        type: 'hello',
        num_connections: this.#sockets.size,
        debug_info: { host: 'emulator', build_number: 1, approximate_connection_time: 3600 },
        connection_info: { app_id: 'A0EMULATOR' },
      }),
    );
    this.#emitChange();
  }

  // ---- HTTP ----

  #emitChange(): void {
    this.#changed.emit('change');
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.baseUrl);
    if (url.pathname.startsWith('/api/') && req.method === 'POST') {
      const method = url.pathname.slice('/api/'.length);
      const args = parseArgs(await readBody(req), req.headers['content-type']);
      const token = bearer(req) ?? (typeof args.token === 'string' ? args.token : undefined);
      this.calls.push({ method, args, token, at: Date.now() });
      const limit = this.rateLimits.get(method);
      if (limit && limit.times > 0) {
        limit.times--;
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(limit.retryAfter) });
        res.end(JSON.stringify({ ok: false, error: 'ratelimited' }));
        this.#emitChange();
        return;
      }
      const body = this.#api(method, args, token);
      json(res, body);
      this.#emitChange();
      return;
    }
    if (url.pathname.startsWith('/files-pri/') && req.method === 'GET') {
      this.#serveFile(url, req, res);
      this.#emitChange();
      return;
    }
    if (url.pathname.startsWith('/response/') && req.method === 'POST') {
      const body = JSON.parse((await readBody(req)) || '{}') as Record<string, unknown>;
      this.responses.push({ id: url.pathname.slice('/response/'.length), body });
      json(res, { ok: true });
      this.#emitChange();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }

  #serveFile(url: URL, req: IncomingMessage, res: ServerResponse): void {
    const segment = url.pathname.split('/')[2] ?? '';
    const fileId = segment.slice(segment.indexOf('-') + 1);
    const file = this.#files.get(fileId);
    const authorized = bearer(req) === this.#options.botToken;
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('file not found');
      return;
    }
    // Slack answers 200 with its sign-in page, not 401, when the token is missing or lacks files:read.
    const served = authorized && file.serve === 'file' ? 'file' : 'login-page';
    this.fileFetches.push({ fileId, authorized, served });
    if (served === 'login-page') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(LOGIN_PAGE),
      });
      res.end(LOGIN_PAGE);
      return;
    }
    if (file.chunked) {
      res.writeHead(200, { 'content-type': file.mimetype });
      const bytes = Buffer.from(file.bytes);
      for (let offset = 0; offset < bytes.length; offset += 64 * 1024)
        res.write(bytes.subarray(offset, offset + 64 * 1024));
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': file.mimetype, 'content-length': file.bytes.byteLength });
    res.end(Buffer.from(file.bytes));
  }

  #api(method: string, args: Record<string, unknown>, token: string | undefined): Record<string, unknown> {
    if (method === 'apps.connections.open') {
      if (!this.#options.appToken || token !== this.#options.appToken)
        return { ok: false, error: 'invalid_auth' };
      return { ok: true, url: `ws://127.0.0.1:${this.#port}/socket?ticket=emulator-ticket` };
    }
    if (token !== this.#options.botToken) return { ok: false, error: token ? 'invalid_auth' : 'not_authed' };
    const channel = typeof args.channel === 'string' ? args.channel : undefined;
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://emulator.slack.invalid/',
          team: this.#options.teamName ?? 'Emulated Team',
          user: this.#options.botName ?? 'blip2',
          team_id: this.teamId,
          user_id: this.botUserId,
          bot_id: this.botId,
          is_enterprise_install: false,
        };
      case 'chat.postMessage': {
        if (!channel) return { ok: false, error: 'channel_not_found' };
        if (this.notInChannel.has(channel)) return { ok: false, error: 'not_in_channel' };
        if (typeof args.text !== 'string' || args.text.length === 0) return { ok: false, error: 'no_text' };
        if (args.text.length > 40_000) return { ok: false, error: 'msg_too_long' };
        const ts = this.nextTs();
        const threadTs = typeof args.thread_ts === 'string' ? args.thread_ts : undefined;
        this.messages.push({ channel, ts, ...(threadTs ? { threadTs } : {}), text: args.text, edits: [] });
        return {
          ok: true,
          channel,
          ts,
          message: {
            type: 'message',
            text: args.text,
            user: this.botUserId,
            bot_id: this.botId,
            ts,
            thread_ts: threadTs,
          },
        };
      }
      case 'chat.delete': {
        const index = this.messages.findIndex((m) => m.channel === channel && m.ts === args.ts);
        if (index < 0) return { ok: false, error: 'message_not_found' };
        this.messages.splice(index, 1);
        return { ok: true, channel, ts: args.ts };
      }
      case 'chat.update': {
        const message = this.messages.find((m) => m.channel === channel && m.ts === args.ts);
        if (!message) return { ok: false, error: 'message_not_found' };
        if (typeof args.text !== 'string' || args.text.length === 0) return { ok: false, error: 'no_text' };
        message.edits.push(message.text);
        message.text = args.text;
        return { ok: true, channel, ts: message.ts, text: message.text };
      }
      case 'chat.postEphemeral':
        return { ok: true, message_ts: this.nextTs() };
      case 'reactions.add': {
        const key = `${channel}/${String(args.timestamp)}/${String(args.name)}`;
        if (this.#reactions.has(key)) return { ok: false, error: 'already_reacted' };
        this.#reactions.add(key);
        return { ok: true };
      }
      case 'reactions.remove': {
        const key = `${channel}/${String(args.timestamp)}/${String(args.name)}`;
        if (!this.#reactions.delete(key)) return { ok: false, error: 'no_reaction' };
        return { ok: true };
      }
      case 'files.info': {
        const file = typeof args.file === 'string' ? this.#files.get(args.file) : undefined;
        if (!file) return { ok: false, error: 'file_not_found' };
        const { bytes: _bytes, serve: _serve, chunked: _chunked, ...described } = file;
        return { ok: true, file: described };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  /** Reactions currently on messages, as "channel/ts/name". */
  get reactions(): string[] {
    return [...this.#reactions];
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#changed.removeAllListeners();
  }
}
