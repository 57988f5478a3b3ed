/**
 * Slack's side of HTTP mode: payloads shaped like the ones Slack sends (Events API callbacks, slash commands,
 * message shortcuts) and signed requests (v0 HMAC-SHA256 over "v0:timestamp:body" with the signing secret).
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { EmulatedFile } from './server.js';

export function slackSignature(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

export interface SignedRequestOptions {
  secret: string;
  /** Unix seconds; now by default. */
  timestamp?: number;
  /** Replaces the computed signature (to send a bad one). */
  signature?: string;
  retryNum?: number;
  retryReason?: string;
}

export interface SlackPostResult {
  status: number;
  body: string;
  /** Time until the response arrived. */
  ms: number;
}

/** POSTs a body to the Bolt receiver the way Slack does. */
export async function postSigned(
  url: string,
  body: string,
  contentType: 'application/json' | 'application/x-www-form-urlencoded',
  options: SignedRequestOptions,
): Promise<SlackPostResult> {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': contentType,
    'x-slack-request-timestamp': String(timestamp),
    'x-slack-signature': options.signature ?? slackSignature(options.secret, timestamp, body),
    'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
  };
  if (options.retryNum !== undefined) {
    headers['x-slack-retry-num'] = String(options.retryNum);
    headers['x-slack-retry-reason'] = options.retryReason ?? 'http_timeout';
  }
  const started = performance.now();
  const response = await fetch(url, { method: 'POST', headers, body });
  const text = await response.text();
  return { status: response.status, body: text, ms: performance.now() - started };
}

export function postEvent(url: string, envelope: Record<string, unknown>, options: SignedRequestOptions) {
  return postSigned(url, JSON.stringify(envelope), 'application/json', options);
}

export function postSlashCommand(url: string, fields: Record<string, string>, options: SignedRequestOptions) {
  return postSigned(
    url,
    new URLSearchParams(fields).toString(),
    'application/x-www-form-urlencoded',
    options,
  );
}

export function postInteraction(
  url: string,
  payload: Record<string, unknown>,
  options: SignedRequestOptions,
) {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return postSigned(url, body, 'application/x-www-form-urlencoded', options);
}

// ---- payloads ----

export interface Workspace {
  teamId: string;
  botUserId: string;
  appId?: string;
}

export interface MessageFields {
  channel: string;
  user: string;
  ts: string;
  text?: string;
  threadTs?: string;
  files?: EmulatedFile[];
  channelType?: 'channel' | 'group' | 'im' | 'mpim';
}

function messageBody(
  type: 'app_mention' | 'message',
  fields: MessageFields,
  team: string,
): Record<string, unknown> {
  return {
    type,
    ...(fields.files?.length && type === 'message' ? { subtype: 'file_share' } : {}),
    user: fields.user,
    text: fields.text ?? '',
    ts: fields.ts,
    event_ts: fields.ts,
    channel: fields.channel,
    team,
    ...(type === 'message' ? { channel_type: fields.channelType ?? 'channel' } : {}),
    ...(fields.threadTs ? { thread_ts: fields.threadTs } : {}),
    ...(fields.files?.length ? { files: fields.files, upload: true } : {}),
    client_msg_id: randomUUID(),
  };
}

/** An Events API callback envelope around one event. */
export function eventCallback(
  workspace: Workspace,
  event: Record<string, unknown>,
  eventId = `Ev${randomUUID().replaceAll('-', '').slice(0, 12).toUpperCase()}`,
): Record<string, unknown> {
  return {
    token: 'legacy-verification-token',
    team_id: workspace.teamId,
    api_app_id: workspace.appId ?? 'A0EMULATOR',
    event,
    type: 'event_callback',
    event_id: eventId,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [
      {
        enterprise_id: null,
        team_id: workspace.teamId,
        user_id: workspace.botUserId,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
    event_context: `4-${randomUUID()}`,
  };
}

/** `@bot …` with optional files: the app_mention event. Its text starts with the bot's mention. */
export function mentionEvent(workspace: Workspace, fields: MessageFields, eventId?: string) {
  const text = `<@${workspace.botUserId}>${fields.text ? ` ${fields.text}` : ''}`;
  return eventCallback(workspace, messageBody('app_mention', { ...fields, text }, workspace.teamId), eventId);
}

/** A plain message event (message.channels / message.im). */
export function messageEvent(workspace: Workspace, fields: MessageFields, eventId?: string) {
  return eventCallback(workspace, messageBody('message', fields, workspace.teamId), eventId);
}

export function slashCommandFields(
  workspace: Workspace,
  fields: { command: string; text?: string; channel: string; user: string; responseUrl: string },
): Record<string, string> {
  return {
    token: 'legacy-verification-token',
    team_id: workspace.teamId,
    team_domain: 'emulated',
    channel_id: fields.channel,
    channel_name: 'general',
    user_id: fields.user,
    user_name: 'someone',
    command: fields.command,
    text: fields.text ?? '',
    api_app_id: workspace.appId ?? 'A0EMULATOR',
    is_enterprise_install: 'false',
    response_url: fields.responseUrl,
    trigger_id: `${Date.now()}.${randomUUID()}`,
  };
}

export function messageShortcutPayload(
  workspace: Workspace,
  fields: { callbackId: string; channel: string; user: string; message: MessageFields; responseUrl: string },
): Record<string, unknown> {
  return {
    type: 'message_action',
    token: 'legacy-verification-token',
    action_ts: `${Date.now() / 1000}`,
    team: { id: workspace.teamId, domain: 'emulated' },
    user: { id: fields.user, username: 'someone', team_id: workspace.teamId, name: 'someone' },
    channel: { id: fields.channel, name: 'general' },
    is_enterprise_install: false,
    enterprise: null,
    callback_id: fields.callbackId,
    trigger_id: `${Date.now()}.${randomUUID()}`,
    response_url: fields.responseUrl,
    message_ts: fields.message.ts,
    message: {
      type: 'message',
      user: fields.message.user,
      text: fields.message.text ?? '',
      ts: fields.message.ts,
      ...(fields.message.threadTs ? { thread_ts: fields.message.threadTs } : {}),
      ...(fields.message.files?.length ? { files: fields.message.files, upload: true } : {}),
    },
  };
}
