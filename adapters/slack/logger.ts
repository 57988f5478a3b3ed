/**
 * The adapter's logging: a small interface the rest of the bot (or `console`) satisfies, a bridge so Bolt and its
 * WebClient log through it, and redaction so no token or secret ever reaches a log line.
 */
import { format } from 'node:util';
import { type Logger as BoltLogger, LogLevel } from '@slack/bolt';
import { MIN_SECRET_CHARS, redact } from '../../src/util/logger.js';

export interface SlackAdapterLogger {
  debug?(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** The bot's one redaction (src/util/logger.ts), re-exported for the adapter's tests. */
export { redact };

/** Wraps a logger so every line is redacted first. */
export function redactingLogger(
  base: SlackAdapterLogger,
  configured: readonly string[],
): Required<SlackAdapterLogger> {
  const secrets = configured.filter((s) => s.length >= MIN_SECRET_CHARS);
  return {
    debug: (message) => base.debug?.(redact(message, secrets)),
    info: (message) => base.info(redact(message, secrets)),
    warn: (message) => base.warn(redact(message, secrets)),
    error: (message) => base.error(redact(message, secrets)),
  };
}

const ORDER: Record<LogLevel, number> = {
  [LogLevel.DEBUG]: 0,
  [LogLevel.INFO]: 1,
  [LogLevel.WARN]: 2,
  [LogLevel.ERROR]: 3,
};

/** A Bolt `Logger` writing through ours, prefixed so Bolt's lines are recognisable. */
export function boltLoggerFor(
  log: Required<SlackAdapterLogger>,
  level: LogLevel = LogLevel.INFO,
): BoltLogger {
  let current = level;
  let name = 'bolt';
  const line = (parts: unknown[]) => `slack/${name}: ${format(...parts)}`;
  const enabled = (at: LogLevel) => ORDER[at] >= ORDER[current];
  return {
    debug: (...parts: unknown[]) => enabled(LogLevel.DEBUG) && log.debug(line(parts)),
    info: (...parts: unknown[]) => enabled(LogLevel.INFO) && log.info(line(parts)),
    warn: (...parts: unknown[]) => enabled(LogLevel.WARN) && log.warn(line(parts)),
    error: (...parts: unknown[]) => enabled(LogLevel.ERROR) && log.error(line(parts)),
    setLevel: (next: LogLevel) => {
      current = next;
    },
    getLevel: () => current,
    setName: (next: string) => {
      name = next;
    },
  };
}
