/**
 * The bot's configuration, parsed once from the environment (plus `.env`) and validated, then passed down.
 * Nothing else in the code base reads `process.env`.
 */

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { type AllowList, type ChatSettings, DEFAULT_CHAT_SETTINGS } from '../chat/settings.js';
import { DEFAULT_QUEUE_CAPACITY } from '../engine/queue.js';
import { UserFacingError } from '../errors.js';
import type { StoreKind, StoreOptions } from '../storage/keyv-store.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../util/logger.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** The store settings, with the kind always resolved. */
export type StoreConfig = StoreOptions & { kind: StoreKind };

export interface DiscordConfig {
  token: string;
  /** Application id; only command registration needs it (it is read from the token otherwise). */
  appId?: string;
  /** REST base such as `http://127.0.0.1:8080/api`; the gateway URL then comes from its `/gateway/bot`. */
  apiUrl?: string;
  /** Register commands in this guild only (instant) instead of globally. */
  guildId?: string;
  /**
   * DISCORD_SHARDS: gateway shards this process runs with discord.js' own sharding ('auto' = as many as Discord's
   * /gateway/bot recommends); undefined = one connection, as small bots use.
   */
  shards?: number | 'auto';
}

export interface WebConfig {
  host: string;
  /** 0 = any free port (tests). */
  port: number;
  /** Whether WEB_PORT was set: with platform credentials, the web adapter runs only then. */
  portSet: boolean;
  /** Bearer key every API request must carry; required when `host` is not a loopback address. */
  apiKey?: string;
  /** Origins allowed to call the API from a browser on another site (exact `scheme://host[:port]`). */
  corsOrigins: string[];
  /** Host names whose https/http image URLs the OpenAI endpoint may fetch; empty = data: URLs only. */
  imageUrlHosts: string[];
}

export const DEFAULT_WEB_HOST = '127.0.0.1';
export const DEFAULT_WEB_PORT = 7860;

/** Whether `host` only listens on this machine (then no API key is needed). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

export type SlackMode = 'socket' | 'http';

export interface SlackConfig {
  /** Bot User OAuth Token (`xoxb-…`): every Web API call and every file download. */
  botToken: string;
  /** `socket`: outbound WebSocket, no public URL needed. `http`: Slack POSTs to this process. */
  mode: SlackMode;
  /** App-level token (`xapp-…`, scope `connections:write`), Socket Mode only. */
  appToken?: string;
  /** Signing secret that authenticates Slack's HTTP requests, HTTP mode only. */
  signingSecret?: string;
  /** HTTP mode: port to listen on (0 picks a free one). */
  port: number;
  /** HTTP mode: interface to bind; all interfaces when unset. */
  host?: string;
  /** Web API base with a trailing slash, e.g. `https://slack.com/api/`; unset means Slack's own. */
  apiUrl?: string;
  /** Slash command name as declared in the manifest. */
  commandName: string;
  /** callback_id of the "Describe image" message shortcut in the manifest. */
  shortcutCallbackId: string;
  /** How long `stop()` waits for answers still being worked on. */
  shutdownGraceMs: number;
}

export const SLACK_DEFAULTS = {
  port: 3000,
  commandName: '/describe',
  shortcutCallbackId: 'describe_image',
  shutdownGraceMs: 10_000,
} as const;

/** Scale-out (QUEUE_URL): fronts and workers share a BullMQ queue and every store in this Redis. */
export interface QueueConfig {
  url: string;
  /** Jobs one worker process runs at once (WORKER_CONCURRENCY). */
  workerConcurrency: number;
  /** A front's heartbeat lifetime (FRONT_HEARTBEAT_SECONDS): how soon a dead front's answers are adopted. */
  frontHeartbeatTtlMs: number;
}

export interface HealthConfig {
  host: string;
  /** HEALTH_PORT; undefined = no health endpoint (the web adapter's /api/v1/health still answers). */
  port?: number;
}

export const DEFAULT_SHUTDOWN_GRACE_SECONDS = 10;
export const DEFAULT_FRONT_HEARTBEAT_SECONDS = 15;

export interface BotConfig {
  modelDir: string;
  dataDir: string;
  store: StoreConfig;
  queueCapacity: number;
  chat: ChatSettings;
  logLevel: LogLevel;
  logFormat: LogFormat;
  discord?: DiscordConfig;
  /** Set when a Slack credential is; a half-done Slack setup is a ConfigError like any other problem. */
  slack?: SlackConfig;
  web: WebConfig;
  queue?: QueueConfig;
  health: HealthConfig;
  /** How long a stop lets running answers finish (SHUTDOWN_GRACE_SECONDS). */
  shutdownGraceMs: number;
  /** The environment the config came from (LOG_LEVEL set or not, embedders' own variables). */
  env: Env;
  /** Values never to print. */
  secrets: string[];
}

export const DEFAULT_MODEL_DIR = 'models/blip2-flan-t5-xl';
/** Images and conversations are remembered this long unless CACHE_TTL_SECONDS says otherwise: 7 days. */
export const DEFAULT_CACHE_TTL_SECONDS = DEFAULT_CHAT_SETTINGS.conversationTtlMs / 1000;
export const DEFAULT_DATA_DIR = 'data';

/** Raised with every problem found, so a person can fix them all at once. */
export class ConfigError extends UserFacingError {
  override name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super('config', `Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Every variable this module reads, with a one-line meaning (shown by `blip2-bot start --help`). */
export const CONFIG_VARIABLES: Readonly<Record<string, string>> = {
  BLIP2_MODEL_DIR: `converted model directory (default ${DEFAULT_MODEL_DIR})`,
  BLIP2_DATA_DIR: `where the SQLite cache and conversations live (default ${DEFAULT_DATA_DIR})`,
  CACHE_STORE: 'sqlite | memory | redis (default sqlite, or redis when REDIS_URL is set)',
  REDIS_URL: 'redis://host:port for CACHE_STORE=redis (default: QUEUE_URL when that is set)',
  QUEUE_URL:
    'redis://host:port: scale out over a BullMQ queue (start --role front, worker); every store goes to Redis',
  WORKER_CONCURRENCY: 'blip2-bot worker: jobs one worker process runs at once (default 1)',
  FRONT_HEARTBEAT_SECONDS: `start --role front: a killed front's answers are delivered by another front after this (default ${DEFAULT_FRONT_HEARTBEAT_SECONDS})`,
  HEALTH_PORT: 'port of the health endpoints GET /healthz and /readyz (default: none)',
  HEALTH_HOST: 'interface of the health endpoints (default 127.0.0.1)',
  SHUTDOWN_GRACE_SECONDS: `on SIGTERM, how long running answers may finish (default ${DEFAULT_SHUTDOWN_GRACE_SECONDS})`,
  CACHE_TTL_SECONDS: `how long images and conversations are remembered (default ${DEFAULT_CACHE_TTL_SECONDS} = ${DEFAULT_CACHE_TTL_SECONDS / 86_400} days; 0 = forever)`,
  DISCORD_TOKEN: 'Discord bot token; starts the Discord adapter',
  DISCORD_APP_ID: 'Discord application id (command registration)',
  DISCORD_API_URL: 'Discord REST base override, e.g. http://127.0.0.1:8080/api',
  DISCORD_GUILD_ID: 'register /describe in this server only',
  DISCORD_SHARDS:
    'auto | N: gateway shards (discord.js sharding) for bots in very many servers (default: none)',
  SLACK_BOT_TOKEN: 'Slack Bot User OAuth Token (xoxb-…); starts the Slack adapter',
  SLACK_APP_TOKEN: 'Slack app-level token (xapp-…) for Socket Mode (no public URL needed)',
  SLACK_SIGNING_SECRET: 'Slack signing secret for HTTP mode (Slack POSTs events to SLACK_PORT)',
  SLACK_MODE: 'socket | http (default socket when SLACK_APP_TOKEN is set, else http)',
  SLACK_PORT: `HTTP mode: port to listen on (default ${SLACK_DEFAULTS.port})`,
  SLACK_HOST: 'HTTP mode: interface to listen on (default all)',
  SLACK_API_URL: 'Slack Web API base override, e.g. http://127.0.0.1:8081/api/',
  ALLOWED_SERVERS: 'comma-separated server (guild/team) ids allowed; empty = all',
  ALLOWED_CHANNELS: 'comma-separated channel ids allowed; empty = all',
  ALLOWED_USERS: 'comma-separated user ids allowed; empty = all',
  ALLOWLIST_MODE: 'ignore | tell: what to do with people outside the lists (default ignore)',
  RATE_LIMIT_PER_MINUTE: `requests per user per minute (default ${DEFAULT_CHAT_SETTINGS.rateLimitPerMinute}; 0 = unlimited)`,
  QUEUE_CAPACITY: `requests allowed to wait for the model (default ${DEFAULT_QUEUE_CAPACITY})`,
  REQUEST_TIMEOUT_SECONDS: `give up on a request after this long, queue wait included (default ${DEFAULT_CHAT_SETTINGS.requestTimeoutMs / 1000})`,
  MAX_IMAGE_MB: `largest image accepted in MB (default ${DEFAULT_CHAT_SETTINGS.maxImageBytes / 1024 / 1024})`,
  LOG_LEVEL: 'debug | info | warn | error (default info)',
  LOG_FORMAT:
    'text | json: one readable line, or one JSON object a line with requestId fields (default text)',
  WEB_HOST: `web playground and API interface (default ${DEFAULT_WEB_HOST}; others need WEB_API_KEY)`,
  WEB_PORT: `web port (default ${DEFAULT_WEB_PORT}); with platform credentials set, the web runs only when set`,
  WEB_API_KEY: 'Bearer key for the web API (required when WEB_HOST is not loopback)',
  WEB_CORS_ORIGINS: 'comma-separated origins allowed to call the web API from other sites; empty = none',
  WEB_IMAGE_URL_HOSTS: 'comma-separated host names the OpenAI endpoint may fetch image URLs from',
};

const SECRET_VARIABLES = [
  'DISCORD_TOKEN',
  'SLACK_BOT_TOKEN',
  'SLACK_APP_TOKEN',
  'SLACK_SIGNING_SECRET',
  'REDIS_URL',
  'QUEUE_URL',
  'WEB_API_KEY',
];

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  string(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  number(name: string, fallback: number, opts: { min: number; max: number; integer?: boolean }): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    const ok =
      Number.isFinite(value) &&
      value >= opts.min &&
      value <= opts.max &&
      (!opts.integer || Number.isInteger(value));
    if (!ok) {
      const kind = opts.integer ? 'a whole number' : 'a number';
      this.problems.push(`${name}=${raw} must be ${kind} from ${opts.min} to ${opts.max}`);
      return fallback;
    }
    return value;
  }

  choice<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = raw.toLowerCase() as T;
    if (!choices.includes(value)) {
      this.problems.push(`${name}=${raw} must be one of: ${choices.join(', ')}`);
      return fallback;
    }
    return value;
  }

  list(name: string): string[] {
    const raw = this.string(name);
    if (raw === undefined) return [];
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }

  url(name: string, protocols: readonly string[]): string | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    try {
      const url = new URL(raw);
      if (!protocols.includes(url.protocol)) throw new Error('protocol');
      return raw.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name} must be a ${protocols.join(' or ')} URL (got ${JSON.stringify(raw)})`);
      return undefined;
    }
  }

  snowflake(name: string): string | undefined {
    const raw = this.string(name);
    if (raw !== undefined && !/^\d{5,20}$/.test(raw)) {
      this.problems.push(
        `${name}=${raw} must be a numeric Discord id (enable Developer Mode, then "Copy ID")`,
      );
      return undefined;
    }
    return raw;
  }
}

/** Validates `env` and builds the configuration; throws `ConfigError` listing every problem. */
export function parseConfig(env: Env, cwd = process.cwd()): BotConfig {
  const r = new Reader(env);
  const modelDir = resolve(cwd, r.string('BLIP2_MODEL_DIR') ?? DEFAULT_MODEL_DIR);
  const dataDir = resolve(cwd, r.string('BLIP2_DATA_DIR') ?? DEFAULT_DATA_DIR);

  const queueUrl = r.url('QUEUE_URL', ['redis:', 'rediss:']);
  // Scaled out, every process must see the same conversations and pictures: the stores live in Redis too.
  const redisUrl = r.url('REDIS_URL', ['redis:', 'rediss:']) ?? queueUrl;
  const storeKind = r.choice<StoreKind>(
    'CACHE_STORE',
    ['sqlite', 'memory', 'redis'],
    redisUrl ? 'redis' : 'sqlite',
  );
  if (queueUrl && storeKind !== 'redis') {
    r.problems.push(
      `QUEUE_URL needs the stores in Redis too (fronts and workers share them): remove CACHE_STORE=${storeKind}`,
    );
  }
  if (storeKind === 'redis' && !redisUrl && !r.string('REDIS_URL')) {
    r.problems.push('CACHE_STORE=redis needs REDIS_URL (for example redis://localhost:6379)');
  }
  const ttlSeconds = r.number('CACHE_TTL_SECONDS', DEFAULT_CACHE_TTL_SECONDS, {
    min: 0,
    max: 10 * 365 * 24 * 3600,
  });
  const ttlMs = ttlSeconds > 0 ? Math.round(ttlSeconds * 1000) : undefined;
  const store: StoreConfig = {
    kind: storeKind,
    sqlitePath: resolve(dataDir, 'blip2-bot.sqlite'),
    ...(redisUrl ? { redisUrl } : {}),
    ...(ttlMs ? { ttlMs } : {}),
  };

  const allowList: AllowList = {
    servers: r.list('ALLOWED_SERVERS'),
    channels: r.list('ALLOWED_CHANNELS'),
    users: r.list('ALLOWED_USERS'),
    mode: r.choice('ALLOWLIST_MODE', ['ignore', 'tell'] as const, 'ignore'),
  };

  const chat: ChatSettings = {
    ...DEFAULT_CHAT_SETTINGS,
    allowList,
    rateLimitPerMinute: r.number('RATE_LIMIT_PER_MINUTE', DEFAULT_CHAT_SETTINGS.rateLimitPerMinute, {
      min: 0,
      max: 10_000,
      integer: true,
    }),
    requestTimeoutMs:
      r.number('REQUEST_TIMEOUT_SECONDS', DEFAULT_CHAT_SETTINGS.requestTimeoutMs / 1000, {
        min: 1,
        max: 3600,
      }) * 1000,
    maxImageBytes: Math.round(
      r.number('MAX_IMAGE_MB', DEFAULT_CHAT_SETTINGS.maxImageBytes / 1024 / 1024, { min: 0.01, max: 500 }) *
        1024 *
        1024,
    ),
    conversationTtlMs: ttlMs ?? 0,
  };

  const queueCapacity = r.number('QUEUE_CAPACITY', DEFAULT_QUEUE_CAPACITY, {
    min: 1,
    max: 10_000,
    integer: true,
  });
  const logLevel = r.choice<LogLevel>('LOG_LEVEL', LOG_LEVELS, 'info');
  const logFormat = r.choice<LogFormat>('LOG_FORMAT', LOG_FORMATS, 'text');

  const token = r.string('DISCORD_TOKEN');
  const apiUrl = r.url('DISCORD_API_URL', ['http:', 'https:']);
  const appId = r.snowflake('DISCORD_APP_ID');
  const guildId = r.snowflake('DISCORD_GUILD_ID');
  const shardsRaw = r.string('DISCORD_SHARDS');
  const shards =
    shardsRaw === undefined
      ? undefined
      : shardsRaw.toLowerCase() === 'auto'
        ? ('auto' as const)
        : r.number('DISCORD_SHARDS', 1, { min: 1, max: 1024, integer: true });
  const discord: DiscordConfig | undefined = token
    ? {
        token: token.replace(/^Bot\s+/i, ''),
        ...(appId ? { appId } : {}),
        ...(apiUrl ? { apiUrl } : {}),
        ...(guildId ? { guildId } : {}),
        ...(shards !== undefined ? { shards } : {}),
      }
    : undefined;

  const slack = readSlackConfig(r);
  const web = readWebConfig(r);
  const workerConcurrency = r.number('WORKER_CONCURRENCY', 1, { min: 1, max: 64, integer: true });
  const frontHeartbeatTtlMs =
    r.number('FRONT_HEARTBEAT_SECONDS', DEFAULT_FRONT_HEARTBEAT_SECONDS, { min: 1, max: 3600 }) * 1000;
  const healthPort = r.string('HEALTH_PORT')
    ? r.number('HEALTH_PORT', 0, { min: 0, max: 65_535, integer: true })
    : undefined;
  const health: HealthConfig = {
    host: r.string('HEALTH_HOST') ?? DEFAULT_WEB_HOST,
    ...(healthPort !== undefined ? { port: healthPort } : {}),
  };
  const shutdownGraceMs =
    r.number('SHUTDOWN_GRACE_SECONDS', DEFAULT_SHUTDOWN_GRACE_SECONDS, { min: 0, max: 3600 }) * 1000;

  if (r.problems.length > 0) throw new ConfigError(r.problems);

  const secrets = [
    ...(discord ? [discord.token] : []),
    ...SECRET_VARIABLES.map((name) => env[name]?.trim()).filter((s): s is string => Boolean(s)),
  ];
  return {
    modelDir,
    dataDir,
    store,
    queueCapacity,
    chat,
    logLevel,
    logFormat,
    ...(discord ? { discord } : {}),
    // One grace period for every stop: SHUTDOWN_GRACE_SECONDS covers Slack's too.
    ...(slack ? { slack: { ...slack, shutdownGraceMs } } : {}),
    web,
    ...(queueUrl ? { queue: { url: queueUrl, workerConcurrency, frontHeartbeatTtlMs } } : {}),
    health,
    shutdownGraceMs,
    env,
    secrets,
  };
}

/** Normalises a Web API base URL: WebClient appends method names, so it must end with a slash. */
export function normaliseApiUrl(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  const text = url.toString();
  return text.endsWith('/') ? text : `${text}/`;
}

const BOT_TOKEN_PROBLEMS: [prefix: string, problem: string][] = [
  [
    'xapp-',
    'SLACK_BOT_TOKEN holds an app-level token (xapp-…). Put it in SLACK_APP_TOKEN, and set SLACK_BOT_TOKEN to ' +
      'the Bot User OAuth Token (xoxb-…) from "OAuth & Permissions".',
  ],
  [
    'xoxp-',
    'SLACK_BOT_TOKEN holds a user token (xoxp-…). Use the Bot User OAuth Token (xoxb-…) from "OAuth & Permissions".',
  ],
];

/**
 * Slack is used when any of its credentials is set; a half-done setup adds problems that say what to set (never
 * echoing a token), and returns undefined.
 */
function readSlackConfig(r: Reader): SlackConfig | undefined {
  const botToken = r.string('SLACK_BOT_TOKEN');
  const appToken = r.string('SLACK_APP_TOKEN');
  const signingSecret = r.string('SLACK_SIGNING_SECRET');
  if (!botToken && !appToken && !signingSecret) return undefined;
  const before = r.problems.length;

  if (!botToken) {
    const have = [appToken && 'SLACK_APP_TOKEN', signingSecret && 'SLACK_SIGNING_SECRET']
      .filter(Boolean)
      .join(' and ');
    r.problems.push(
      `${have} ${have.includes(' and ') ? 'are' : 'is'} set but SLACK_BOT_TOKEN is not. Copy the Bot User OAuth ` +
        'Token (xoxb-…) from your app\'s "OAuth & Permissions" page (install the app to the workspace first).',
    );
  } else if (!botToken.startsWith('xoxb-')) {
    r.problems.push(
      BOT_TOKEN_PROBLEMS.find(([prefix]) => botToken.startsWith(prefix))?.[1] ??
        'SLACK_BOT_TOKEN does not look like a bot token: it should start with xoxb- (the Bot User OAuth Token ' +
          'from "OAuth & Permissions").',
    );
  }
  if (appToken && !appToken.startsWith('xapp-')) {
    r.problems.push(
      'SLACK_APP_TOKEN should be an app-level token starting with xapp- ("Basic Information" → "App-Level Tokens", ' +
        'scope connections:write).',
    );
  }

  const requested = r.string('SLACK_MODE')?.toLowerCase();
  if (requested !== undefined && requested !== 'socket' && requested !== 'http') {
    r.problems.push(`SLACK_MODE must be "socket" or "http", not "${requested}".`);
  }
  const chosen = requested === 'socket' || requested === 'http' ? requested : undefined;
  const mode: SlackMode | undefined = chosen ?? (appToken ? 'socket' : signingSecret ? 'http' : undefined);
  if (botToken && requested === undefined && mode === undefined) {
    r.problems.push(
      'SLACK_BOT_TOKEN is set but the bot has no way to receive events. Set SLACK_APP_TOKEN (xapp-…, Socket ' +
        'Mode: no public URL needed, best for local use) or SLACK_SIGNING_SECRET (HTTP mode: Slack POSTs to ' +
        'SLACK_PORT).',
    );
  }
  if (mode === 'socket' && !appToken) {
    r.problems.push(
      'SLACK_MODE=socket needs SLACK_APP_TOKEN (xapp-…): "Basic Information" → "App-Level Tokens", scope ' +
        'connections:write.',
    );
  }
  if (mode === 'http' && !signingSecret) {
    r.problems.push(
      'SLACK_MODE=http needs SLACK_SIGNING_SECRET ("Basic Information" → "App Credentials" → Signing Secret).',
    );
  }

  const port = r.number('SLACK_PORT', SLACK_DEFAULTS.port, { min: 0, max: 65_535, integer: true });
  const host = r.string('SLACK_HOST');
  const apiUrlRaw = r.string('SLACK_API_URL');
  const apiUrl = apiUrlRaw === undefined ? undefined : normaliseApiUrl(apiUrlRaw);
  if (apiUrlRaw !== undefined && apiUrl === undefined) {
    r.problems.push(
      `SLACK_API_URL must be an http(s) URL such as https://slack.com/api/ (got "${apiUrlRaw}")`,
    );
  }
  if (r.problems.length > before || !botToken || !mode) return undefined;
  return {
    botToken,
    mode,
    ...(mode === 'socket' ? { appToken } : { signingSecret }),
    port,
    ...(host ? { host } : {}),
    ...(apiUrl ? { apiUrl } : {}),
    commandName: SLACK_DEFAULTS.commandName,
    shortcutCallbackId: SLACK_DEFAULTS.shortcutCallbackId,
    shutdownGraceMs: SLACK_DEFAULTS.shutdownGraceMs,
  };
}

function readWebConfig(r: Reader): WebConfig {
  const host = r.string('WEB_HOST') ?? DEFAULT_WEB_HOST;
  const portSet = r.string('WEB_PORT') !== undefined;
  const port = r.number('WEB_PORT', DEFAULT_WEB_PORT, { min: 0, max: 65_535, integer: true });
  const apiKey = r.string('WEB_API_KEY');
  if (apiKey !== undefined && apiKey.length < 16) {
    r.problems.push('WEB_API_KEY must be at least 16 characters (for example: openssl rand -hex 24)');
  }
  if (!isLoopbackHost(host) && apiKey === undefined) {
    r.problems.push(
      `WEB_HOST=${host} is reachable from other machines, so WEB_API_KEY must be set (or use WEB_HOST=127.0.0.1)`,
    );
  }
  const corsOrigins: string[] = [];
  for (const origin of r.list('WEB_CORS_ORIGINS')) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {}
    if (
      !parsed ||
      !['http:', 'https:'].includes(parsed.protocol) ||
      parsed.origin !== origin.replace(/\/$/, '')
    ) {
      r.problems.push(`WEB_CORS_ORIGINS: ${origin} must be an origin such as https://chat.example.com`);
    } else corsOrigins.push(parsed.origin);
  }
  const imageUrlHosts: string[] = [];
  for (const name of r.list('WEB_IMAGE_URL_HOSTS')) {
    const hostName = name.toLowerCase();
    if (!/^[a-z0-9.-]+$/.test(hostName) || hostName.startsWith('.') || hostName.endsWith('.')) {
      r.problems.push(`WEB_IMAGE_URL_HOSTS: ${name} must be a host name such as images.example.com`);
    } else imageUrlHosts.push(hostName);
  }
  return {
    host,
    port,
    portSet,
    ...(apiKey !== undefined ? { apiKey } : {}),
    corsOrigins,
    imageUrlHosts,
  };
}

/**
 * Reads `.env` in `cwd` when present (variables already set in the environment win, as with `node --env-file`)
 * and returns the merged variables. `process.env` itself is left untouched.
 */
export function readEnvironment(processEnv: Env = process.env, cwd = process.cwd(), file = '.env'): Env {
  const path = resolve(cwd, file);
  if (!existsSync(path)) return { ...processEnv };
  let fromFile: Record<string, string>;
  try {
    fromFile = parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch (err) {
    throw new ConfigError([`${path} could not be read: ${(err as Error).message}`]);
  }
  const merged: Record<string, string | undefined> = { ...fromFile };
  for (const [name, value] of Object.entries(processEnv)) if (value !== undefined) merged[name] = value;
  return merged;
}

/**
 * Slack's settings alone (the Slack adapter's `slackConfigFromEnv`): undefined when no Slack credential is set,
 * else the settings or a ConfigError listing every Slack problem at once.
 */
export function parseSlackConfig(env: Env): SlackConfig | undefined {
  const r = new Reader(env);
  const slack = readSlackConfig(r);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return slack;
}

/** `readEnvironment` then `parseConfig`: what `blip2-bot start` uses. */
export function loadConfig(options: { env?: Env; cwd?: string; envFile?: string } = {}): BotConfig {
  const cwd = options.cwd ?? process.cwd();
  return parseConfig(readEnvironment(options.env ?? process.env, cwd, options.envFile), cwd);
}
