/**
 * Slack settings, read once from the environment by `slackConfigFromEnv` and passed down. Error messages name the
 * variable to fix and never echo a token.
 */
import { UserFacingError } from '../../src/errors.js';

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

export class SlackConfigError extends UserFacingError {
  override name = 'SlackConfigError';
  constructor(message: string) {
    super('slack_config', message);
  }
}

function read(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function checkBotToken(token: string): void {
  if (token.startsWith('xoxb-')) return;
  if (token.startsWith('xapp-')) {
    throw new SlackConfigError(
      'SLACK_BOT_TOKEN holds an app-level token (xapp-…). Put it in SLACK_APP_TOKEN, and set SLACK_BOT_TOKEN to ' +
        'the Bot User OAuth Token (xoxb-…) from "OAuth & Permissions".',
    );
  }
  if (token.startsWith('xoxp-')) {
    throw new SlackConfigError(
      'SLACK_BOT_TOKEN holds a user token (xoxp-…). Use the Bot User OAuth Token (xoxb-…) from "OAuth & Permissions".',
    );
  }
  throw new SlackConfigError(
    'SLACK_BOT_TOKEN does not look like a bot token: it should start with xoxb- (the Bot User OAuth Token from ' +
      '"OAuth & Permissions").',
  );
}

function parsePort(raw: string | undefined): number {
  if (raw === undefined) return SLACK_DEFAULTS.port;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SlackConfigError(`SLACK_PORT must be a port number between 0 and 65535, not "${raw}".`);
  }
  return port;
}

/** Normalises a Web API base URL: WebClient appends method names, so it must end with a slash. */
export function normaliseApiUrl(raw: string, variable = 'SLACK_API_URL'): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SlackConfigError(`${variable} must be a URL such as https://slack.com/api/, not "${raw}".`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SlackConfigError(`${variable} must be an http(s) URL, not "${raw}".`);
  }
  const text = url.toString();
  return text.endsWith('/') ? text : `${text}/`;
}

/**
 * Reads the Slack settings. Returns undefined when no Slack credential is set (Slack is simply not used) and throws
 * a `SlackConfigError` that says what to set when the setup is only half done.
 */
export function slackConfigFromEnv(env: NodeJS.ProcessEnv): SlackConfig | undefined {
  const botToken = read(env, 'SLACK_BOT_TOKEN');
  const appToken = read(env, 'SLACK_APP_TOKEN');
  const signingSecret = read(env, 'SLACK_SIGNING_SECRET');
  if (!botToken && !appToken && !signingSecret) return undefined;

  if (!botToken) {
    const have = [appToken && 'SLACK_APP_TOKEN', signingSecret && 'SLACK_SIGNING_SECRET']
      .filter(Boolean)
      .join(' and ');
    throw new SlackConfigError(
      `${have} ${have.includes(' and ') ? 'are' : 'is'} set but SLACK_BOT_TOKEN is not. Copy the Bot User OAuth ` +
        'Token (xoxb-…) from your app\'s "OAuth & Permissions" page (install the app to the workspace first).',
    );
  }
  checkBotToken(botToken);
  if (appToken && !appToken.startsWith('xapp-')) {
    throw new SlackConfigError(
      'SLACK_APP_TOKEN should be an app-level token starting with xapp- ("Basic Information" → "App-Level Tokens", ' +
        'scope connections:write).',
    );
  }

  const requested = read(env, 'SLACK_MODE')?.toLowerCase();
  if (requested !== undefined && requested !== 'socket' && requested !== 'http') {
    throw new SlackConfigError(`SLACK_MODE must be "socket" or "http", not "${requested}".`);
  }
  const mode: SlackMode | undefined = requested ?? (appToken ? 'socket' : signingSecret ? 'http' : undefined);
  if (mode === undefined) {
    throw new SlackConfigError(
      'SLACK_BOT_TOKEN is set but the bot has no way to receive events. Set SLACK_APP_TOKEN (xapp-…, Socket ' +
        'Mode: no public URL needed, best for local use) or SLACK_SIGNING_SECRET (HTTP mode: Slack POSTs to ' +
        'SLACK_PORT).',
    );
  }
  if (mode === 'socket' && !appToken) {
    throw new SlackConfigError(
      'SLACK_MODE=socket needs SLACK_APP_TOKEN (xapp-…): "Basic Information" → "App-Level Tokens", scope ' +
        'connections:write.',
    );
  }
  if (mode === 'http' && !signingSecret) {
    throw new SlackConfigError(
      'SLACK_MODE=http needs SLACK_SIGNING_SECRET ("Basic Information" → "App Credentials" → Signing Secret).',
    );
  }

  const apiUrlRaw = read(env, 'SLACK_API_URL');
  const host = read(env, 'SLACK_HOST');
  return {
    botToken,
    mode,
    ...(mode === 'socket' ? { appToken } : { signingSecret }),
    port: parsePort(read(env, 'SLACK_PORT')),
    ...(host ? { host } : {}),
    ...(apiUrlRaw ? { apiUrl: normaliseApiUrl(apiUrlRaw) } : {}),
    commandName: SLACK_DEFAULTS.commandName,
    shortcutCallbackId: SLACK_DEFAULTS.shortcutCallbackId,
    shutdownGraceMs: SLACK_DEFAULTS.shutdownGraceMs,
  };
}
