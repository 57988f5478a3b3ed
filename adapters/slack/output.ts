/**
 * `ChatOutput` for one Slack thread: answers are posted as thread replies, edited in place with chat.update (queue
 * positions), and an hourglass reaction on the person's message shows the job is running.
 */
import type { ChatOutput, PostedMessage } from '../../src/chat/types.js';
import { escapeForSlack, SLACK_MESSAGE_LIMIT, splitForSlack } from './text.js';

/** The Web API calls this output makes; Bolt's WebClient satisfies it. */
export interface SlackPostingClient {
  chat: {
    postMessage(args: {
      channel: string;
      text: string;
      thread_ts?: string;
      unfurl_links?: boolean;
      unfurl_media?: boolean;
    }): Promise<{ ts?: string }>;
    update(args: { channel: string; ts: string; text: string }): Promise<unknown>;
    delete(args: { channel: string; ts: string }): Promise<unknown>;
  };
  reactions: {
    add(args: { channel: string; timestamp: string; name: string }): Promise<unknown>;
    remove(args: { channel: string; timestamp: string; name: string }): Promise<unknown>;
  };
}

export const WORKING_REACTION = 'hourglass_flowing_sand';

export interface SlackThreadTarget {
  channel: string;
  /** Thread to answer in; undefined posts top-level (a direct message outside a thread). */
  threadTs?: string;
  /** The person's message that gets the "working on it" reaction. */
  reactTo?: string;
}

export function slackErrorCode(error: unknown): string | undefined {
  const data = (error as { data?: { error?: unknown } } | undefined)?.data;
  return typeof data?.error === 'string' ? data.error : undefined;
}

/** What to do when a question comes without a picture, in Slack's terms. */
export const SLACK_USAGE_HINT =
  'Mention me in a message with a picture attached (add a question, or none for a caption), then keep asking in the thread.';

export class SlackThreadOutput implements ChatOutput {
  readonly maxMessageLength = SLACK_MESSAGE_LIMIT;
  readonly canEdit = true;
  readonly usageHint = SLACK_USAGE_HINT;
  #reacted = false;
  #reactionFailed = false;
  #adding: Promise<void> | undefined;
  /** True once anything was posted: the bot is part of this thread from then on. */
  posted = false;
  /** The first failed post, kept because the chat core logs delivery errors rather than rethrowing them. */
  deliveryError: unknown;

  constructor(
    private readonly client: SlackPostingClient,
    private readonly target: SlackThreadTarget,
    private readonly warn: (message: string) => void = () => {},
  ) {}

  /** Where this output answers, for a front that outlives this one (scaled out). */
  get resumeTarget(): SlackThreadTarget {
    return this.target;
  }

  /**
   * The output of a ticket's target, in another front: the same thread. The dead front's hourglass is taken away
   * first (best effort), since that front cannot.
   */
  static async resume(
    client: SlackPostingClient,
    target: unknown,
    warn: (message: string) => void,
  ): Promise<SlackThreadOutput> {
    const t = target as Partial<SlackThreadTarget> | undefined;
    if (typeof t?.channel !== 'string') throw new Error('a Slack delivery ticket without a channel');
    if (typeof t.reactTo === 'string') {
      await client.reactions
        .remove({ channel: t.channel, timestamp: t.reactTo, name: WORKING_REACTION })
        .catch(() => {});
    }
    return new SlackThreadOutput(
      client,
      { channel: t.channel, ...(typeof t.threadTs === 'string' ? { threadTs: t.threadTs } : {}) },
      warn,
    );
  }

  async #post(text: string): Promise<string> {
    let result: { ts?: string };
    try {
      result = await this.client.chat.postMessage({
        channel: this.target.channel,
        text,
        ...(this.target.threadTs ? { thread_ts: this.target.threadTs } : {}),
        unfurl_links: false,
        unfurl_media: false,
      });
    } catch (error) {
      this.deliveryError ??= error;
      throw error;
    }
    if (!result.ts) throw new Error('chat.postMessage returned no ts');
    this.posted = true;
    return result.ts;
  }

  /** Posts the text, split into several replies when longer than one message takes; returns the first. */
  async send(text: string): Promise<PostedMessage> {
    const [first = '', ...rest] = splitForSlack(escapeForSlack(text), this.maxMessageLength);
    const id = await this.#post(first);
    for (const piece of rest) await this.#post(piece);
    return { id };
  }

  /** Replaces a posted message; text beyond one message's limit follows as new replies. */
  async edit(message: PostedMessage, text: string): Promise<void> {
    const [first = '', ...rest] = splitForSlack(escapeForSlack(text), this.maxMessageLength);
    await this.client.chat.update({ channel: this.target.channel, ts: message.id, text: first });
    for (const piece of rest) await this.#post(piece);
  }

  /** Removes a message the bot posted (a queue notice that could not be edited into the answer). */
  async delete(message: PostedMessage): Promise<void> {
    await this.client.chat.delete({ channel: this.target.channel, ts: message.id });
  }

  /** Adds the hourglass once; later calls (the core repeats them while a job runs) cost nothing. */
  async showTyping(): Promise<void> {
    const reactTo = this.target.reactTo;
    if (this.#reacted || this.#reactionFailed || !reactTo) return;
    this.#reacted = true;
    this.#adding = (async () => {
      try {
        await this.client.reactions.add({
          channel: this.target.channel,
          timestamp: reactTo,
          name: WORKING_REACTION,
        });
      } catch (error) {
        if (slackErrorCode(error) === 'already_reacted') return;
        this.#reacted = false;
        this.#reactionFailed = true;
        this.warn(`slack: could not add the working reaction (${slackErrorCode(error) ?? String(error)})`);
      }
    })();
    await this.#adding;
  }

  /** Takes the hourglass away once the job is over. */
  async finish(): Promise<void> {
    await this.#adding;
    if (!this.#reacted || !this.target.reactTo) return;
    this.#reacted = false;
    try {
      await this.client.reactions.remove({
        channel: this.target.channel,
        timestamp: this.target.reactTo,
        name: WORKING_REACTION,
      });
    } catch (error) {
      if (slackErrorCode(error) !== 'no_reaction') {
        this.warn(`slack: could not remove the working reaction (${slackErrorCode(error) ?? String(error)})`);
      }
    }
  }
}
