/**
 * The platform-neutral chat contract. Adapters (Discord, Slack, local terminal) translate platform events into
 * `ChatMessage`s and implement `ChatOutput`; the chat core never sees a platform type.
 */

export type Platform = 'discord' | 'slack' | 'local';

/** An image attached to a message, not yet downloaded. */
export interface IncomingImage {
  /** File name as the platform reports it. */
  name: string;
  /** Declared MIME type, if the platform gives one; checked before any download. */
  contentType?: string;
  /** Declared size in bytes, if known; checked before any download. */
  size?: number;
  /** Downloads the bytes, failing once more than `maxBytes` arrive. Called at most once, right away. */
  download(maxBytes: number, signal?: AbortSignal): Promise<Uint8Array>;
}

export interface ChatMessage {
  platform: Platform;
  /** Conversation id, unique within the platform (a Discord thread, a Slack channel+thread_ts, ...). */
  conversation: string;
  /** Platform user id. */
  user: string;
  /** Server (Discord guild / Slack team) and channel ids, for allow-lists. */
  server?: string;
  channel?: string;
  /** Message text with the bot mention removed. */
  text: string;
  images: IncomingImage[];
  /** True when the bot was addressed directly (mention, slash command, shortcut, DM). */
  addressed: boolean;
  /** Idempotency key: the same id is never answered twice. */
  messageId: string;
}

/** A message the bot posted, so it can be edited later. */
export interface PostedMessage {
  id: string;
}

/** What the core asks an adapter to do in one conversation. */
export interface ChatOutput {
  /** Longest text one platform message takes; the core splits longer answers. */
  readonly maxMessageLength: number;
  /** Whether `edit` works (queue positions are updated in place when it does). */
  readonly canEdit: boolean;
  send(text: string): Promise<PostedMessage>;
  edit(message: PostedMessage, text: string): Promise<void>;
  /** Removes a posted message; where an edit fails, a stale queue notice is deleted instead. Optional. */
  delete?(message: PostedMessage): Promise<void>;
  /** Shows a "working on it" signal; the core calls it again while a job runs. */
  showTyping(): Promise<void>;
}

/** What adapters call: the chat core (src/chat/core.ts) implements it. */
export interface ChatHandler {
  handle(message: ChatMessage, output: ChatOutput): Promise<void>;
  /** Whether the conversation still has a picture (its encoding cached): a repeat need not send it again. */
  hasPicture?(platform: ChatMessage['platform'], conversation: string): Promise<boolean>;
  /**
   * The allow-list's verdict before anything is said, for platforms that must acknowledge a command at once
   * (Slack's /describe): `allowed`, `ignore` (say nothing) or `tell` (say `refusal`, privately).
   */
  access?(who: Pick<ChatMessage, 'server' | 'channel' | 'user'>): {
    verdict: 'allowed' | 'ignore' | 'tell';
    refusal: string;
  };
}

/** A started platform adapter, so `blip2-bot start` can stop them all on SIGINT/SIGTERM. */
export interface RunningAdapter {
  readonly name: string;
  stop(): Promise<void>;
}
