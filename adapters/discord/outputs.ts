/** The ChatOutputs of the Discord adapter: in a thread it opens, as a reply, or through an interaction. */
import type { ChatInputCommandInteraction, Message, ThreadChannel } from 'discord.js';
import type { ChatOutput, PostedMessage } from '../../src/chat/types.js';
import type { Logger } from '../../src/util/logger.js';
import { DESCRIBE_COMMAND } from './commands.js';

export const DISCORD_MESSAGE_LIMIT = 2000;

export function threadName(question: string, fileName: string | undefined): string {
  const base = question.trim() || (fileName ? `Picture: ${fileName}` : 'Picture');
  const oneLine = base.replace(/\s+/g, ' ');
  return oneLine.length > 90 ? `${oneLine.slice(0, 89)}…` : oneLine;
}

type Mode = 'thread' | 'reply' | 'channel';

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

  /** The thread opened for the answer, if any. */
  thread: ThreadChannel | undefined;

  private channel(): Promise<SendableChannels> {
    if (this.target) return Promise.resolve(this.target);
    this.opening ??= this.open();
    return this.opening;
  }

  private async open(): Promise<SendableChannels> {
    if (this.mode === 'thread') {
      try {
        this.thread = await this.source.startThread({ name: this.name, autoArchiveDuration: 1440 });
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

  constructor(private readonly interaction: ChatInputCommandInteraction) {}

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
