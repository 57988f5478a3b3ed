/**
 * The ChatOutputs of the Discord adapter: in a thread it opens, as a reply, or through an interaction; and the
 * same outputs rebuilt from their `resumeTarget` by a front that outlives the one that took the message.
 */
import {
  type ChatInputCommandInteraction,
  type Client,
  type Message,
  Routes,
  type ThreadChannel,
} from 'discord.js';
import type { ChatEvent, ChatOutput, PostedMessage } from '../../src/chat/types.js';
import type { Logger } from '../../src/util/logger.js';
import { DESCRIBE_COMMAND } from './commands.js';

export const DISCORD_MESSAGE_LIMIT = 2000;

export function threadName(question: string, fileName: string | undefined): string {
  const base = question.trim() || (fileName ? `Picture: ${fileName}` : 'Picture');
  const oneLine = base.replace(/\s+/g, ' ');
  return oneLine.length > 90 ? `${oneLine.slice(0, 89)}…` : oneLine;
}

type Mode = 'thread' | 'reply' | 'channel';

/** JSON a Discord output leaves in a delivery ticket (scaled out), to be answered from another front. */
export type DiscordResumeTarget =
  | { kind: 'message'; channelId: string; messageId: string; mode: Mode; name: string }
  /**
   * The interaction's token edits its reply for 15 minutes, longest request included. `thread`: where the answer
   * opens a thread for follow-ups (the reply, in a channel that allows threads), as `/describe` does when answered.
   */
  | { kind: 'interaction'; token: string; thread?: ThreadOnReply };

/** The `/describe` reply a thread is opened on once it holds an answer; its id is the conversation's. */
export interface ThreadOnReply {
  channelId: string;
  messageId: string;
  name: string;
}

/** What the output needs from a text channel, thread or DM. */
interface SendableChannels {
  send(options: { content: string }): Promise<Message>;
  sendTyping(): Promise<void>;
  messages: { edit(id: string, options: { content: string }): Promise<Message> };
}

/** What to do when a question comes without a picture, with Discord's own command. */
export const DISCORD_USAGE_HINT =
  'Mention me in a message with a picture attached (add a question, or none for a caption), or use ' +
  `\`/${DESCRIBE_COMMAND}\`. Then keep asking in the thread.`;

/**
 * Answers about a message. 'thread' opens a thread from the message on the first post (falling back to a reply
 * when Discord refuses), 'reply' replies to the message first, 'channel' just posts (threads, DMs).
 */
export class MessageOutput implements ChatOutput {
  readonly maxMessageLength = DISCORD_MESSAGE_LIMIT;
  readonly canEdit = true;
  readonly usageHint = DISCORD_USAGE_HINT;
  private target: SendableChannels | undefined;
  private opening: Promise<SendableChannels> | undefined;
  private posted = 0;

  constructor(
    private readonly source: Message,
    private mode: Mode,
    private readonly name: string,
    private readonly logger: Logger,
  ) {}

  /** The thread opened for the answer, if any (or, resumed, the one an earlier front opened). */
  thread: ThreadChannel | undefined;

  get resumeTarget(): DiscordResumeTarget {
    return {
      kind: 'message',
      channelId: this.source.channelId,
      messageId: this.source.id,
      mode: this.mode,
      name: this.name,
    };
  }

  private channel(): Promise<SendableChannels> {
    if (this.target) return Promise.resolve(this.target);
    this.opening ??= this.open();
    return this.opening;
  }

  private async open(): Promise<SendableChannels> {
    if (this.mode === 'thread') {
      try {
        this.thread ??= await this.source.startThread({ name: this.name, autoArchiveDuration: 1440 });
        this.target = this.thread;
        return this.thread;
      } catch (err) {
        this.logger.warn('could not open a thread; replying to the message instead', err);
        this.mode = 'reply';
      }
    }
    this.target = this.source.channel as SendableChannels;
    return this.target;
  }

  async send(text: string): Promise<PostedMessage> {
    const channel = await this.channel();
    const first = this.posted++ === 0;
    const message =
      first && this.mode === 'reply'
        ? await this.source.reply({ content: text, failIfNotExists: false })
        : await channel.send({ content: text });
    return { id: message.id };
  }

  async edit(message: PostedMessage, text: string): Promise<void> {
    const channel = await this.channel();
    await channel.messages.edit(message.id, { content: text });
  }

  async showTyping(): Promise<void> {
    // Before the thread exists, typing shows in the channel the person wrote in.
    const channel = this.target ?? (this.source.channel as SendableChannels);
    await channel.sendTyping();
  }
}

/** Answers a slash command: the deferred reply first, follow-ups after it. */
export class InteractionOutput implements ChatOutput {
  readonly maxMessageLength = DISCORD_MESSAGE_LIMIT;
  readonly canEdit = true;
  readonly usageHint = DISCORD_USAGE_HINT;
  private originalId: string | undefined;
  used = false;

  constructor(
    private readonly interaction: ChatInputCommandInteraction,
    private readonly thread?: ThreadOnReply,
  ) {}

  get resumeTarget(): DiscordResumeTarget {
    return {
      kind: 'interaction',
      token: this.interaction.token,
      ...(this.thread ? { thread: this.thread } : {}),
    };
  }

  async send(text: string): Promise<PostedMessage> {
    this.used = true;
    if (!this.originalId) {
      const message = await this.interaction.editReply({ content: text });
      this.originalId = message.id;
      return { id: message.id };
    }
    const message = await this.interaction.followUp({ content: text });
    return { id: message.id };
  }

  async edit(message: PostedMessage, text: string): Promise<void> {
    const target = message.id === this.originalId ? '@original' : message.id;
    await this.interaction.editReply({ content: text, message: target });
  }

  async showTyping(): Promise<void> {
    // A deferred interaction already shows "is thinking…" until the reply is edited.
  }
}

/**
 * Answers an interaction through its webhook (its token), from any process: the deferred reply is edited into the
 * answer, longer answers follow up.
 */
class InteractionWebhookOutput implements ChatOutput {
  readonly maxMessageLength = DISCORD_MESSAGE_LIMIT;
  readonly canEdit = true;
  readonly usageHint = DISCORD_USAGE_HINT;
  private edited = false;
  private threadOpened = false;

  constructor(
    private readonly client: Client,
    private readonly appId: string,
    private readonly token: string,
    private readonly thread: ThreadOnReply | undefined,
    private readonly logger: Logger,
  ) {}

  /**
   * An answer (not a refusal) means the conversation has its picture: the thread for follow-ups is opened on the
   * reply, as the front that took the command would have done after answering.
   */
  report(event: ChatEvent): void {
    if (event.type !== 'answered' || !this.thread || this.threadOpened) return;
    this.threadOpened = true;
    const { channelId, messageId, name } = this.thread;
    void fetchMessage(this.client, channelId, messageId)
      .then((reply) => reply.startThread({ name, autoArchiveDuration: 1440 }))
      .catch((err) => this.logger.warn('could not open a thread on the adopted /describe answer', err));
  }

  async send(text: string): Promise<PostedMessage> {
    const body = { content: text };
    if (!this.edited) {
      this.edited = true;
      const message = (await this.client.rest.patch(Routes.webhookMessage(this.appId, this.token), {
        body,
        auth: false,
      })) as { id: string };
      return { id: message.id };
    }
    const message = (await this.client.rest.post(Routes.webhook(this.appId, this.token), {
      body,
      auth: false,
    })) as { id: string };
    return { id: message.id };
  }

  async edit(message: PostedMessage, text: string): Promise<void> {
    // Before anything was sent here, the message is the dead front's queue notice, which was the deferred reply
    // itself; what follows it is a follow-up, not another edit of the reply.
    const target = this.edited ? message.id : '@original';
    this.edited = true;
    await this.client.rest.patch(Routes.webhookMessage(this.appId, this.token, target), {
      body: { content: text },
      auth: false,
    });
  }

  async showTyping(): Promise<void> {}
}

/** A message a ticket names, fetched by id from any process. */
async function fetchMessage(client: Client, channelId: string, messageId: string): Promise<Message> {
  const channel = await client.channels.fetch(channelId);
  if (!channel?.isTextBased()) throw new Error(`Discord channel ${channelId} is gone`);
  return channel.messages.fetch(messageId);
}

/** The output of a ticket's target: the same thread, reply or interaction the dead front would have used. */
export async function resumeDiscordOutput(
  client: Client,
  target: unknown,
  logger: Logger,
): Promise<ChatOutput> {
  const t = target as Partial<DiscordResumeTarget> | undefined;
  if (t?.kind === 'interaction' && typeof t.token === 'string') {
    const appId = client.application?.id ?? client.user?.id;
    if (!appId) throw new Error('the Discord client has no application id yet');
    const thread = t.thread;
    const threadOn =
      typeof thread?.channelId === 'string' &&
      typeof thread.messageId === 'string' &&
      typeof thread.name === 'string'
        ? thread
        : undefined;
    return new InteractionWebhookOutput(client, appId, t.token, threadOn, logger);
  }
  if (
    t?.kind !== 'message' ||
    typeof t.channelId !== 'string' ||
    typeof t.messageId !== 'string' ||
    (t.mode !== 'thread' && t.mode !== 'reply' && t.mode !== 'channel')
  ) {
    throw new Error('a Discord delivery ticket without a channel and message');
  }
  const source = await fetchMessage(client, t.channelId, t.messageId);
  const output = new MessageOutput(source, t.mode, String(t.name ?? 'Picture'), logger);
  if (t.mode === 'thread') {
    // The dead front may have opened the thread already (it has the message's id): answer there.
    const thread = await client.channels.fetch(t.messageId).catch(() => null);
    if (thread?.isThread()) output.thread = thread;
  }
  return output;
}
