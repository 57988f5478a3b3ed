/**
 * The parts of Slack messages and events the adapter acts on, read defensively from payloads, and where in Slack
 * an answer about them belongs.
 */
import { parseSlackFiles, type SlackFile } from './files.js';

export interface SlackMessage {
  channel: string;
  /** "channel", "group", "im", "mpim" when Slack says; direct-message channel ids start with D otherwise. */
  channelType?: string;
  user?: string;
  botId?: string;
  subtype?: string;
  team?: string;
  /** Raw mrkdwn. */
  text: string;
  ts: string;
  threadTs?: string;
  files: SlackFile[];
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** Reads a message-shaped payload (app_mention, message, a shortcut's message); undefined when it is not one. */
export function parseSlackMessage(raw: unknown, channelOverride?: string): SlackMessage | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const event = raw as Record<string, unknown>;
  const channel = channelOverride ?? str(event.channel);
  const ts = str(event.ts);
  if (!channel || !ts) return undefined;
  const message: SlackMessage = {
    channel,
    ts,
    text: str(event.text) ?? '',
    files: parseSlackFiles(event.files),
  };
  const optional = {
    channelType: str(event.channel_type),
    user: str(event.user),
    botId: str(event.bot_id),
    subtype: str(event.subtype),
    team: str(event.team) ?? str(event.user_team),
    threadTs: str(event.thread_ts),
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) (message as unknown as Record<string, string>)[key] = value;
  }
  return message;
}

export function isDirectMessage(message: Pick<SlackMessage, 'channel' | 'channelType'>): boolean {
  return message.channelType ? message.channelType === 'im' : message.channel.startsWith('D');
}

/** A reply inside an existing thread (not the thread's parent). */
export function isThreadReply(message: Pick<SlackMessage, 'ts' | 'threadTs'>): boolean {
  return message.threadTs !== undefined && message.threadTs !== message.ts;
}

export interface SlackPlace {
  /** ChatMessage.conversation: the channel and thread the exchange lives in. */
  conversation: string;
  channel: string;
  /** Thread to reply in; undefined for a direct message outside any thread (the DM itself is the conversation). */
  threadTs?: string;
}

/**
 * Where the answer to a message goes: its thread (the message's own ts starts one), except a top-level direct
 * message, where the whole DM is one conversation and answers follow as plain messages.
 */
export function placeOf(
  message: Pick<SlackMessage, 'channel' | 'channelType' | 'ts' | 'threadTs'>,
): SlackPlace {
  if (isDirectMessage(message) && !isThreadReply(message)) {
    return { conversation: message.channel, channel: message.channel };
  }
  const threadTs = message.threadTs ?? message.ts;
  return { conversation: `${message.channel}:${threadTs}`, channel: message.channel, threadTs };
}

/** True when the text mentions this bot user (`<@U123>` or `<@U123|name>`). */
export function mentionsUser(text: string, userId: string | undefined): boolean {
  return userId !== undefined && (text.includes(`<@${userId}>`) || text.includes(`<@${userId}|`));
}
