/**
 * The web adapter: the playground page, the JSON API and the OpenAI-compatible endpoint on one `node:http`
 * server, all through the same chat core as Discord and Slack.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Keyv from 'keyv';
import type { ChatCore } from '../../src/chat/core.js';
import type { ImageQuestionEngine, RunningAdapter } from '../../src/chat/types.js';
import type { WebConfig } from '../../src/config/config.js';
import { UserFacingError } from '../../src/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ConversationApi } from './api.js';
import { refusalToHttp } from './ask.js';
import { RequestGuard } from './guard.js';
import { HttpError, sendError, sendJson } from './http.js';
import type { Resolver } from './images.js';
import { OpenAiApi } from './openai.js';
import { openApiDocument } from './openapi.js';
import { ThreadAppendOutput } from './resume.js';
import { loadStaticFiles, type StaticFile } from './static.js';
import { ThreadStore } from './threads.js';

export interface WebAdapterOptions {
  core: ChatCore;
  engine: Pick<ImageQuestionEngine, 'modelId' | 'demo' | 'queueLength'>;
  config: WebConfig;
  /** Where the playground's transcripts live (namespace e.g. 'web-threads'). */
  threads: Keyv;
  /** How long transcripts are kept; 0 = as long as the store keeps them. */
  threadTtlMs?: number;
  maxImageBytes?: number;
  logger: Logger;
  /** DNS for remote image URLs (tests inject one); the system's by default. */
  resolver?: Resolver;
  /** Resolved addresses remote image URLs may not point at; private and local ones by default. */
  isBlockedAddress?: (address: string) => boolean;
}

export interface RunningWebAdapter extends RunningAdapter {
  /** Where the playground is, e.g. http://127.0.0.1:7860/ */
  readonly url: string;
  readonly port: number;
}

const CONVERSATION = /^\/api\/v1\/conversations\/([A-Za-z0-9-]{1,64})$/;
const MESSAGES = /^\/api\/v1\/conversations\/([A-Za-z0-9-]{1,64})\/messages$/;

export async function startWebAdapter(options: WebAdapterOptions): Promise<RunningWebAdapter> {
  const { core, engine, config, logger } = options;
  const guard = new RequestGuard(config);
  const maxImageBytes = options.maxImageBytes ?? core.settings.maxImageBytes;
  let closing = false;
  const clientId = (req: IncomingMessage) => guard.clientId(req);
  const threads = new ThreadStore(options.threads, options.threadTtlMs ?? core.settings.conversationTtlMs);
  // Scaled out, a front that outlives another records the dead one's web answers in their threads.
  core.resumeOutputs('web', (target) => ThreadAppendOutput.from(threads, target));
  const api = new ConversationApi({
    core,
    engine,
    threads,
    maxImageBytes,
    clientId,
    isClosing: () => closing,
  });
  const openai = new OpenAiApi({
    core,
    engine,
    maxImageBytes,
    imageUrlHosts: config.imageUrlHosts,
    ...(options.resolver ? { resolver: options.resolver } : {}),
    ...(options.isBlockedAddress ? { isBlockedAddress: options.isBlockedAddress } : {}),
    clientId,
  });
  const files: ReadonlyMap<string, StaticFile> = await loadStaticFiles();

  const route = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const method = req.method ?? 'GET';
    const file = files.get(path);
    if (file) {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      res.writeHead(200, {
        'content-type': file.type,
        'content-length': file.body.byteLength,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        'content-security-policy':
          "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
      });
      res.end(method === 'HEAD' ? undefined : file.body);
      return;
    }
    const isOpenAi = path.startsWith('/v1/');
    if (!path.startsWith('/api/v1/') && !isOpenAi) {
      throw new HttpError(404, 'not_found', `There is nothing at ${path.slice(0, 200)}.`);
    }
    if (method === 'OPTIONS') {
      guard.preflight(req, res);
      return;
    }
    guard.checkOrigin(req, res);
    if (path === '/api/v1/health') {
      if (method !== 'GET') throw methodNotAllowed('GET');
      api.health(res);
      return;
    }
    if (path === '/api/v1/openapi.json') {
      if (method !== 'GET') throw methodNotAllowed('GET');
      sendJson(res, 200, openApiDocument(engine.modelId));
      return;
    }
    guard.checkKey(req);
    if (closing) {
      throw new HttpError(503, 'shutting_down', 'The bot is restarting. Please ask again in a minute.', {
        'retry-after': '30',
      });
    }
    if (path === '/api/v1/conversations') {
      if (method !== 'POST') throw methodNotAllowed('POST');
      await api.create(req, res);
      return;
    }
    const messages = MESSAGES.exec(path);
    if (messages) {
      if (method !== 'POST') throw methodNotAllowed('POST');
      await api.followUp(req, res, messages[1]!);
      return;
    }
    const conversation = CONVERSATION.exec(path);
    if (conversation) {
      if (method !== 'GET') throw methodNotAllowed('GET');
      await api.get(res, conversation[1]!);
      return;
    }
    if (path === '/v1/models') {
      if (method !== 'GET') throw methodNotAllowed('GET');
      openai.models(res);
      return;
    }
    if (path === '/v1/chat/completions') {
      if (method !== 'POST') throw methodNotAllowed('POST');
      await openai.completions(req, res);
      return;
    }
    throw new HttpError(404, 'not_found', `There is no API at ${path.slice(0, 200)}.`);
  };

  const server: Server = createServer({ requestTimeout: 120_000, headersTimeout: 30_000 }, (req, res) => {
    let path = '/';
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {}
    const openaiStyle = path.startsWith('/v1/');
    route(req, res, path)
      .catch((err: unknown) => {
        if (err instanceof HttpError) {
          if (err.status >= 500) logger.warn(`${req.method} ${path}: ${err.status} ${err.code}`);
          sendError(res, err, openaiStyle);
          return;
        }
        // An image error or the like thrown before the core was asked (decoding base64, a too-large data URL).
        if (err instanceof UserFacingError) {
          sendError(
            res,
            refusalToHttp({ type: 'refused', reason: 'rejected', message: err.userMessage, error: err }),
            openaiStyle,
          );
          return;
        }
        logger.error(`${req.method} ${path} failed`, err);
        sendError(
          res,
          new HttpError(500, 'internal', 'Sorry, something went wrong on my side. Please try again.'),
          openaiStyle,
        );
      })
      .finally(() => {
        // A body left unread (refused before reading) must not keep the connection.
        if (!req.complete) res.once('finish', () => req.destroy());
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new Error(`${config.host}:${config.port} is already in use; set WEB_PORT to another port`));
      } else if (err.code === 'EADDRNOTAVAIL') {
        reject(new Error(`WEB_HOST=${config.host} is not an address of this machine`));
      } else reject(err);
    });
    server.listen(config.port, config.host, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => logger.warn('web server error', err));
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // Listening on every interface: this machine's own address is the one to open.
  const shown = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}/`;
  logger.info(`web playground and API on ${url}${guard.requiresKey ? ' (API key required)' : ''}`);

  return {
    name: 'web',
    url,
    port,
    async stop() {
      closing = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Streams still open after the chat core's grace period are cut.
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      });
    },
  };
}

function methodNotAllowed(allowed: string): HttpError {
  return new HttpError(405, 'method_not_allowed', `Use ${allowed} here.`, { allow: allowed });
}
