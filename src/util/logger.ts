/**
 * The one logger and the one secret redaction: a small leveled logger that never prints secrets. Every
 * configured token is replaced before a line is written, and anything shaped like a Discord or Slack token is
 * masked even when nobody registered it. Modules that log take a `Logger` (or a Pick of it).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface Logger {
  debug(message: string, detail?: unknown): void;
  info(message: string, detail?: unknown): void;
  warn(message: string, detail?: unknown): void;
  error(message: string, detail?: unknown): void;
  /** A logger whose lines start with `[scope]` and carry `fields` (e.g. the request id of a job). */
  child(scope: string, fields?: LogFields): Logger;
}

/** Fields every line of a child logger carries: `requestId=…` in text, keys of their own in JSON. */
export type LogFields = Readonly<Record<string, string | number>>;

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

export interface LoggerOptions {
  level?: LogLevel;
  /** Exact strings to mask (tokens, secrets). Short strings are ignored so that masking stays meaningful. */
  secrets?: readonly (string | undefined)[];
  /** Where lines go; stderr by default so stdout stays free for the terminal chat. */
  write?: (line: string) => void;
  scope?: string;
  /** 'text' (default): one readable line; 'json': one JSON object a line, for log collectors (LOG_FORMAT). */
  format?: LogFormat;
  fields?: LogFields;
}

const TOKEN_PATTERNS: readonly RegExp[] = [
  // Discord bot tokens: base64 user id . timestamp . HMAC
  /[A-Za-z\d_-]{23,28}\.[A-Za-z\d_-]{6,7}\.[A-Za-z\d_-]{27,}/g,
  // Slack tokens (bot, user, app-level, refresh, configuration: xoxb-, xoxp-, xapp-, xoxe-, …)
  /\bx(?:ox[a-z]|app)-[A-Za-z\d-]+/g,
];

/**
 * Configured secrets shorter than this are not registered for masking: replacing every "test" or "1234" would
 * garble lines and hide nothing.
 */
export const MIN_SECRET_CHARS = 8;

/** Masks the given secrets (by value) and anything shaped like a Discord or Slack token. */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (secret) out = out.split(secret).join('[redacted]');
  for (const pattern of TOKEN_PATTERNS) out = out.replace(pattern, '[redacted]');
  return out;
}

function describe(detail: unknown): string {
  if (detail === undefined) return '';
  if (detail instanceof Error) {
    const cause = detail.cause === undefined ? '' : ` (cause: ${describe(detail.cause).trim()})`;
    return ` ${detail.stack ?? `${detail.name}: ${detail.message}`}${cause}`;
  }
  if (typeof detail === 'string') return ` ${detail}`;
  try {
    return ` ${JSON.stringify(detail)}`;
  } catch {
    return ` ${String(detail)}`;
  }
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
  const secrets = (options.secrets ?? []).filter(
    (s): s is string => typeof s === 'string' && s.length >= MIN_SECRET_CHARS,
  );
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const prefix = options.scope ? `[${options.scope}] ` : '';
  const fields = options.fields ?? {};
  const tagged = Object.entries(fields)
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  const emit = (level: LogLevel, message: string, detail: unknown) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const time = new Date().toISOString();
    const line =
      options.format === 'json'
        ? JSON.stringify({
            time,
            level,
            ...(options.scope ? { scope: options.scope } : {}),
            ...fields,
            msg: message,
            ...(detail !== undefined ? { detail: describe(detail).trim() } : {}),
          })
        : `${time} ${level.toUpperCase().padEnd(5)} ${prefix}${tagged}${message}${describe(detail)}`;
    write(redact(line, secrets));
  };
  return {
    debug: (m, d) => emit('debug', m, d),
    info: (m, d) => emit('info', m, d),
    warn: (m, d) => emit('warn', m, d),
    error: (m, d) => emit('error', m, d),
    child: (scope, more) =>
      createLogger({
        ...options,
        scope: options.scope ? `${options.scope}/${scope}` : scope,
        secrets,
        ...(more ? { fields: { ...fields, ...more } } : {}),
      }),
  };
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};
