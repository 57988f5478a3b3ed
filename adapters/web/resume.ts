/**
 * A web conversation's answer after its front died (scaled out): the HTTP request that asked died with it, so
 * the answer another front adopts is appended to the conversation's transcript, where a reload or a `GET` of the
 * thread (through any front) shows it.
 */
import type { ChatEvent, ChatOutput, PostedMessage } from '../../src/chat/types.js';
import { type ThreadStore, threadTurn } from './threads.js';

const THREAD_ID = /^[A-Za-z0-9-]{1,64}$/;

/** What a web request's output leaves in its delivery ticket: the thread it belongs to. */
export function webResumeTarget(threadId: string): { thread: string } {
  return { thread: threadId };
}

/** The output a surviving front answers through: the answer goes into the thread's transcript once. */
export class ThreadAppendOutput implements ChatOutput {
  readonly maxMessageLength = Number.POSITIVE_INFINITY;
  readonly canEdit = false;
  #answered: Extract<ChatEvent, { type: 'answered' }> | undefined;

  constructor(
    private readonly threads: ThreadStore,
    private readonly threadId: string,
  ) {}

  static from(threads: ThreadStore, target: unknown): ThreadAppendOutput {
    const thread = (target as { thread?: unknown } | undefined)?.thread;
    if (typeof thread !== 'string' || !THREAD_ID.test(thread)) {
      throw new Error('a web delivery ticket without a thread id');
    }
    return new ThreadAppendOutput(threads, thread);
  }

  report(event: ChatEvent): void {
    if (event.type === 'answered') this.#answered = event;
  }

  /** The answer's text arrives after its facts: the turn is written then. A refusal has no turn to show. */
  async send(): Promise<PostedMessage> {
    const answered = this.#answered;
    this.#answered = undefined;
    if (answered) await this.threads.append(this.threadId, answered.imageName, threadTurn(answered));
    return { id: this.threadId };
  }

  async edit(): Promise<void> {}
  async showTyping(): Promise<void> {}
}
