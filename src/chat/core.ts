/**
 * The platform-neutral conversation core: decides what a message asks for, keeps each conversation's state in
 * keyv, asks the engine and answers through the adapter's `ChatOutput`. No platform type appears here.
 *
 * Scaled out, a front may die while its requests run; each request then carries a delivery ticket (what the
 * core needs to finish the turn, and the adapter's `resumeTarget`), and the engine hands the orphans to a live
 * front's core, which finishes the turn the same way and answers through an output its adapter rebuilds.
 */
import type Keyv from 'keyv';
import type {
  DeliveryTicket,
  GenerateResult,
  ImageQuestionEngine,
  OrphanedRequest,
  Turn,
} from '../engine/api.js';
import {
  AnsweredElsewhereError,
  ImageError,
  RequestAbortedError,
  RequestTimeoutError,
} from '../engine/errors.js';
import { UserFacingError } from '../errors.js';
import { waitWithGrace } from '../util/grace.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { isAllowed } from './allow-list.js';
import { type ConversationState, ConversationStore } from './conversation-store.js';
import { MessageDeduper } from './dedupe.js';
import { checkDeclared } from './download.js';
import { DEMO_NOTICE, messages } from './messages.js';
import { keepTyping } from './progress.js';
import { RateLimiter } from './rate-limit.js';
import { Reply } from './reply.js';
import { type ChatSettings, DEFAULT_CHAT_SETTINGS } from './settings.js';
import { splitMessage } from './split.js';
import type {
  ChatEvent,
  ChatHandler,
  ChatMessage,
  ChatOutput,
  IncomingImage,
  Platform,
  PostedMessage,
  RefusalReason,
  ResumeOutputFactory,
} from './types.js';

export interface ChatCoreOptions {
  engine: ImageQuestionEngine;
  /** Conversation state (namespace e.g. 'conversations'). */
  conversations: Keyv;
  /** Handled message ids, so redeliveries after a restart are still skipped; memory only when omitted. */
  handled?: Keyv;
  settings?: Partial<ChatSettings>;
  logger?: Logger;
  now?: () => number;
  /**
   * Shared with other processes (fronts scaled out behind one Redis): which messages were handled and each
   * person's rate limit. Without it both live in this process (and `handled`).
   */
  shared?: SharedChatState;
}

/** What several fronts must agree on; src/scale implements it in Redis. */
export interface SharedChatState {
  /** True the first time anyone claims `id` within `ttlMs`. */
  claim(id: string, ttlMs: number): Promise<boolean>;
  /** 0 when `key` may make another request this minute (and records it), else ms until it may. */
  take(key: string, perMinute: number): Promise<number>;
}

/**
 * A turn between asking the engine and storing its answer: everything `finishTurn` needs, as JSON, so that
 * another process can finish it from a delivery ticket.
 */
interface PendingTurn {
  platform: Platform;
  conversation: string;
  question: string;
  task: 'caption' | 'question';
  /** The conversation state the answer will be stored into (the picture's key and name, the earlier turns). */
  state: ConversationState;
  /** The turns the question was answered from (a question's new turns are these plus its own). */
  history?: Turn[];
  /** The core's remarks decided before the answer (several pictures, a new subject). */
  notes: string[];
  /** Whether the picture came with this message (for the log line). */
  imageSent: boolean;
}

/** The delivery ticket: the pending turn and where the adapter answers (its `ChatOutput.resumeTarget`). */
interface TurnTicket extends PendingTurn {
  v: 1;
  target: unknown;
  /** The queue notice the asking front posted, once it has (the adopting front edits it into the answer). */
  notice?: PostedMessage;
}

function readTicket(delivery: DeliveryTicket): TurnTicket | undefined {
  const t = delivery as Partial<TurnTicket>;
  return t.v === 1 &&
    typeof t.platform === 'string' &&
    typeof t.conversation === 'string' &&
    typeof t.question === 'string' &&
    (t.task === 'caption' || t.task === 'question') &&
    typeof t.state === 'object' &&
    t.state !== null &&
    Array.isArray(t.notes)
    ? (t as TurnTicket)
    : undefined;
}

/** How long a handled message id is remembered. */
const HANDLED_TTL_MS = 24 * 3600 * 1000;

const TIMEOUT = Symbol('timeout');
const SHUTDOWN = Symbol('shutdown');

/** The engine no longer has the picture a conversation refers to (cache entry expired or evicted). */
export function isExpiredImageError(err: unknown): boolean {
  return err instanceof ImageError && err.code === 'expired';
}

/** Tells an adapter that wants facts (the web API) what happened; a failing listener never breaks the answer. */
function report(output: ChatOutput, event: ChatEvent): void {
  try {
    output.report?.(event);
  } catch {
    // The texts still go out through send/edit.
  }
}

/** Errors meant for people (src/errors.ts) are shown as they are; anything else gets the generic apology. */
function userMessageOf(err: unknown): string | undefined {
  return err instanceof UserFacingError && err.userMessage ? err.userMessage : undefined;
}

export class ChatCore implements ChatHandler {
  readonly settings: ChatSettings;
  private readonly engine: ImageQuestionEngine;
  private readonly store: ConversationStore;
  private readonly deduper: MessageDeduper;
  private readonly limiter: RateLimiter;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly shared: SharedChatState | undefined;
  private readonly jobs = new Set<Promise<void>>();
  private readonly conversationTails = new Map<string, Promise<void>>();
  /** Every running request's controller, aborted at shutdown (one listener per request on a shared signal
   * warned past 10 concurrent requests). */
  private readonly running = new Set<AbortController>();
  /** Per platform, how its adapter rebuilds an output from a ticket's target (dead fronts' answers). */
  private readonly resumers = new Map<Platform, ResumeOutputFactory>();
  private closing = false;

  constructor(options: ChatCoreOptions) {
    this.settings = {
      ...DEFAULT_CHAT_SETTINGS,
      ...options.settings,
      allowList: options.settings?.allowList ?? DEFAULT_CHAT_SETTINGS.allowList,
    };
    this.engine = options.engine;
    this.now = options.now ?? Date.now;
    this.store = new ConversationStore(options.conversations, this.settings.conversationTtlMs);
    this.shared = options.shared;
    this.deduper = new MessageDeduper(options.handled, HANDLED_TTL_MS, undefined, this.now);
    this.limiter = new RateLimiter(this.settings.rateLimitPerMinute, this.now);
    this.logger = options.logger ?? silentLogger;
    // Scaled out: answers owed by fronts that died come here once an adapter can deliver them.
    this.engine.onOrphan?.({
      accepts: (delivery) => {
        const ticket = readTicket(delivery);
        return !this.closing && ticket !== undefined && this.resumers.has(ticket.platform);
      },
      deliver: (orphan) => this.track(this.resume(orphan)),
    });
  }

  /**
   * An adapter says how to answer on its platform without the original event (its `ChatOutput.resumeTarget`
   * comes back as `target`), so a dead front's answers can be delivered by this process.
   */
  resumeOutputs(platform: Platform, factory: ResumeOutputFactory): void {
    this.resumers.set(platform, factory);
  }

  get demo(): boolean {
    return this.engine.demo;
  }

  /** Whether a conversation has a picture the bot can still talk about (adapters use it to open a thread). */
  access(who: Pick<ChatMessage, 'server' | 'channel' | 'user'>): {
    verdict: 'allowed' | 'ignore' | 'tell';
    refusal: string;
  } {
    const allowed = isAllowed({ ...who } as ChatMessage, this.settings.allowList);
    return {
      verdict: allowed ? 'allowed' : this.settings.allowList.mode === 'tell' ? 'tell' : 'ignore',
      refusal: messages.notAllowed,
    };
  }

  async hasPicture(platform: ChatMessage['platform'], conversation: string): Promise<boolean> {
    return (await this.store.get(`${platform}:${conversation}`)) !== undefined;
  }

  /** The stored state of a conversation (the web API shows its turns). */
  conversation(
    platform: ChatMessage['platform'],
    conversation: string,
  ): Promise<ConversationState | undefined> {
    return this.store.get(`${platform}:${conversation}`);
  }

  /** Forgets a conversation, e.g. one a stateless API request needed only for its own answer. */
  async forget(platform: ChatMessage['platform'], conversation: string): Promise<void> {
    await this.store.delete(`${platform}:${conversation}`);
  }

  /** Requests being handled right now. */
  get activeJobs(): number {
    return this.jobs.size;
  }

  async handle(message: ChatMessage, output: ChatOutput): Promise<void> {
    await this.track(this.run(message, output));
  }

  /** Counted as running (the health endpoint, the shutdown grace). */
  private async track(job: Promise<void>): Promise<void> {
    this.jobs.add(job);
    try {
      await job;
    } finally {
      this.jobs.delete(job);
    }
  }

  /** A dead front's request: its turn finished here, its person told through the rebuilt output. */
  private async resume(orphan: OrphanedRequest): Promise<void> {
    const log = this.logger.child('request', { requestId: orphan.requestId });
    const ticket = readTicket(orphan.delivery);
    const factory = ticket && this.resumers.get(ticket.platform);
    if (!ticket || !factory) {
      log.warn('a dead front left an answer this process cannot deliver; dropped');
      return;
    }
    const key = `${ticket.platform}:${ticket.conversation}`;
    await this.serially(key, async () => {
      try {
        const output = await factory(ticket.target);
        const notice = typeof ticket.notice?.id === 'string' ? { id: ticket.notice.id } : undefined;
        const reply = new Reply(output, this.logger, notice);
        if (orphan.result) {
          await reply.finish(await this.finishTurn(ticket, orphan.result, output, orphan.requestId, true));
          return;
        }
        let reason: RefusalReason = 'failed';
        let text = messages.lostInRestart;
        if (orphan.error !== undefined) {
          ({ reason, text } = await this.explain(orphan.error, new AbortController().signal, key));
          text = `${messages.resumed}\n${text}`;
        }
        report(output, {
          type: 'refused',
          reason,
          message: text,
          ...(reason === 'rejected' ? { error: orphan.error } : {}),
        });
        await reply.finish(text);
      } catch (err) {
        log.error(`could not deliver ${ticket.platform} answer after a front died`, err);
      }
    });
  }

  /**
   * Stops taking new requests, lets running ones finish for up to `graceMs`, then cancels the rest (their people
   * are told the bot is restarting). Adapters should still be connected while this runs.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.closing = true;
    if ((await waitWithGrace(this.jobs, graceMs)) === 'timeout') {
      this.logger.info(`cancelling ${this.jobs.size} running request(s) for shutdown`);
      for (const controller of this.running) controller.abort(SHUTDOWN);
      await Promise.allSettled([...this.jobs]);
    }
  }

  private async run(message: ChatMessage, output: ChatOutput): Promise<void> {
    const log = this.logger;
    try {
      const id = `${message.platform}:${message.messageId}`;
      const fresh = this.shared
        ? (await this.deduper.claim(id)) && (await this.shared.claim(id, HANDLED_TTL_MS))
        : await this.deduper.claim(id);
      if (!fresh) {
        log.debug(`skipping ${message.platform} message ${message.messageId}: already handled`);
        return;
      }
      if (!isAllowed(message, this.settings.allowList)) {
        log.info(`ignoring ${message.platform} user ${message.user}: not in the allow-list`);
        if (message.addressed && this.settings.allowList.mode === 'tell')
          await this.refuse(output, 'not_allowed', messages.notAllowed);
        else report(output, { type: 'refused', reason: 'not_allowed', message: messages.notAllowed });
        return;
      }
      if (this.closing) {
        if (message.addressed) await this.refuse(output, 'shutting_down', messages.shuttingDown);
        return;
      }
      const key = `${message.platform}:${message.conversation}`;
      await this.serially(key, () => this.converse(key, message, output));
    } catch (err) {
      log.error(`could not answer ${message.platform} message ${message.messageId}`, err);
    }
  }

  /** One conversation's messages are answered in order, so turns are never lost to a concurrent write. */
  private async serially(key: string, task: () => Promise<void>): Promise<void> {
    const previous = this.conversationTails.get(key) ?? Promise.resolve();
    const current = previous.then(task, task);
    const tail = current.catch(() => {});
    this.conversationTails.set(key, tail);
    try {
      await current;
    } finally {
      if (this.conversationTails.get(key) === tail) this.conversationTails.delete(key);
    }
  }

  private async converse(key: string, message: ChatMessage, output: ChatOutput): Promise<void> {
    const question = message.text.trim();
    const state = await this.store.get(key);
    const hasImage = message.images.length > 0;

    // A conversation starts only when someone addresses the bot; pictures in others' threads are not for it.
    if (!state && !message.addressed) return;
    if (!hasImage && !state) {
      await this.refuse(output, 'no_picture', output.usageHint ?? messages.noPicture);
      return;
    }
    // Chatter without a question in a conversation the bot follows is not for the bot.
    if (!hasImage && !question && !message.addressed) return;
    if (question.length > this.settings.maxQuestionChars) {
      await this.refuse(
        output,
        'question_too_long',
        messages.questionTooLong(this.settings.maxQuestionChars),
      );
      return;
    }
    // The per-person limit protects a shared bot from one busy person; the terminal is the person running it.
    const person = `${message.platform}:${message.user}`;
    const wait =
      message.platform === 'local'
        ? 0
        : this.shared
          ? await this.shared.take(person, this.settings.rateLimitPerMinute)
          : this.limiter.take(person);
    if (wait > 0) {
      await this.refuse(output, 'rate_limited', messages.rateLimited(wait), { retryAfterMs: wait });
      return;
    }

    const controller = new AbortController();
    const started = this.now();
    const timer = setTimeout(() => controller.abort(TIMEOUT), this.settings.requestTimeoutMs);
    this.running.add(controller);
    const stopTyping = keepTyping(output, this.settings.typingIntervalMs, this.logger);
    const reply = new Reply(output, this.logger);
    try {
      const text = await this.answer(message, question, state, reply, output, controller.signal, started);
      stopTyping();
      await reply.finish(text);
    } catch (err) {
      stopTyping();
      if (err instanceof AnsweredElsewhereError) {
        // Another front took this one for dead and answered; a second reply would be a duplicate.
        this.logger.info(`not answering ${message.platform} message ${message.messageId}: ${err.message}`);
        return;
      }
      const { reason, text } = await this.explain(err, controller.signal, key);
      if (!reply.sent) {
        report(output, {
          type: 'refused',
          reason,
          message: text,
          ...(reason === 'rejected' ? { error: err } : {}),
        });
        await reply.finish(text);
      }
    } finally {
      stopTyping();
      clearTimeout(timer);
      this.running.delete(controller);
    }
  }

  private async answer(
    message: ChatMessage,
    question: string,
    state: ConversationState | undefined,
    reply: Reply,
    output: ChatOutput,
    signal: AbortSignal,
    started: number,
  ): Promise<string> {
    const notes: string[] = [];
    let current = state;
    /** A new picture travels with its answer's request: encoding and answering are one queued job, so the
     * place in line, the timeout and cancellation cover both, and pictures are answered in arrival order. */
    let bytes: Uint8Array | undefined;
    if (message.images.length > 0) {
      const picked = this.pickImage(message.images);
      if (picked.images > 1) notes.push(messages.severalImages(picked.images, picked.image.name));
      bytes = await picked.image.download(this.settings.maxImageBytes, signal);
      signal.throwIfAborted();
      // The key (a hash, no queue) tells a re-sent picture from a new subject before the answer is generated.
      const imageKey = this.engine.imageKey?.(bytes);
      const same = imageKey !== undefined && state?.imageKey === imageKey;
      if (state && !same) notes.push(messages.newSubject);
      current = {
        v: 1,
        imageKey: imageKey ?? '',
        imageName: picked.image.name,
        turns: same && state ? state.turns : [],
        updatedAt: this.now(),
      };
    }
    if (!current) throw new Error('unreachable: no conversation state');

    const remaining = Math.max(1, this.settings.requestTimeoutMs - (this.now() - started));
    // Follows the request into the queue and onto the worker that answers it (logs, job id).
    const requestId = `${message.platform}-${message.messageId}`;
    const common = {
      requestId,
      image: bytes ?? current.imageKey,
      signal,
      timeoutMs: remaining,
      onQueuePosition: (position: number) => {
        report(output, { type: 'queued', position });
        reply.notice.update(position);
      },
      ...(output.report
        ? { onToken: (token: { textSoFar: string }) => report(output, { type: 'token', ...token }) }
        : {}),
    };
    const task = question ? 'question' : 'caption';
    // The request's own settings win over the bot's per-task ones, field by field.
    const configured = this.settings.generation?.[task];
    const options = message.options || configured ? { ...configured, ...message.options } : undefined;
    const history = question ? (message.history ?? current.turns) : undefined;
    const turn: PendingTurn = {
      platform: message.platform,
      conversation: message.conversation,
      question,
      task,
      state: current,
      ...(history ? { history } : {}),
      notes,
      imageSent: bytes !== undefined,
    };
    // Only where someone could deliver it: an engine that adopts dead fronts' requests, an adapter that can
    // answer without this event.
    const ticket: TurnTicket | undefined =
      this.engine.onOrphan && output.resumeTarget !== undefined
        ? { v: 1, ...turn, target: output.resumeTarget }
        : undefined;
    if (ticket) {
      reply.notice.onPosted = (notice) => {
        this.engine
          .amendDelivery?.(requestId, { ...ticket, notice } as unknown as DeliveryTicket)
          .catch((e) => this.logger.debug('could not record the queue notice in the delivery ticket', e));
      };
    }
    const result = await this.engine.generate({
      ...common,
      ...(history ? { question, history } : { task: 'caption' as const }),
      ...(options ? { options } : {}),
      ...(ticket ? { delivery: ticket as unknown as DeliveryTicket } : {}),
    });
    return this.finishTurn(turn, result, output, requestId, false);
  }

  /**
   * The one way a turn ends, here or in a front that adopted a dead one's request: the answer stored in the
   * conversation, logged, reported and worded (`resumed`: the person is told the bot restarted meanwhile).
   */
  private async finishTurn(
    turn: PendingTurn,
    result: GenerateResult,
    output: ChatOutput,
    requestId: string,
    resumed: boolean,
  ): Promise<string> {
    const { question, task } = turn;
    const current = turn.state;
    if (turn.history) {
      current.turns = [...turn.history, { question, answer: result.text }].slice(
        -this.settings.maxStoredTurns,
      );
    }
    // The conversation moves to a new picture once it has been encoded (a damaged one leaves the old subject).
    if (result.imageKey) current.imageKey = result.imageKey;
    current.updatedAt = this.now();
    await this.store.set(`${turn.platform}:${turn.conversation}`, current);
    this.logger
      .child('request', { requestId })
      .info(
        `${turn.platform} ${task} answered in ${Math.round(result.timings.totalMs)} ms` +
          ` (queue ${Math.round(result.timings.queueMs)} ms, picture ${turn.imageSent ? `sent with this message, ${result.imageCached ? 'found in the cache' : 'encoded'}` : 'from the conversation'})` +
          (resumed ? ', delivered by this front for one that died' : ''),
      );

    const notes = [...turn.notes];
    if (result.droppedTurns > 0) notes.push(messages.droppedTurns(result.droppedTurns));
    const lines = [result.text.trim() || messages.emptyAnswer, ...notes];
    if (resumed) {
      lines.unshift(messages.resumed);
      notes.push(messages.resumed);
    }
    if (result.demo || this.engine.demo) lines.push(DEMO_NOTICE);
    const text = lines.join('\n');
    report(output, {
      type: 'answered',
      task,
      question,
      answer: result.text,
      notes,
      text,
      imageName: current.imageName,
      result,
    });
    return text;
  }

  /** The first usable attachment; throws the reason when none is usable. */
  private pickImage(images: IncomingImage[]): { image: IncomingImage; images: number } {
    const usable: IncomingImage[] = [];
    let firstRejection: Error | undefined;
    for (const image of images) {
      const rejection = checkDeclared(image, this.settings.maxImageBytes);
      if (rejection) firstRejection ??= rejection;
      else usable.push(image);
    }
    const first = usable[0];
    if (!first) throw firstRejection ?? new Error('no image');
    return { image: first, images: usable.length };
  }

  private async explain(
    err: unknown,
    signal: AbortSignal,
    key: string,
  ): Promise<{ reason: RefusalReason; text: string }> {
    if (signal.reason === TIMEOUT || err instanceof RequestTimeoutError) {
      this.logger.warn('request timed out');
      return { reason: 'timeout', text: messages.timeout };
    }
    if (signal.reason === SHUTDOWN || err instanceof RequestAbortedError) {
      return { reason: 'shutting_down', text: messages.shuttingDown };
    }
    if (isExpiredImageError(err)) {
      await this.store.delete(key).catch(() => {});
      return { reason: 'expired', text: messages.expired };
    }
    const userMessage = userMessageOf(err);
    if (userMessage) {
      this.logger.info(`told the person: ${userMessage}`);
      return { reason: 'rejected', text: userMessage };
    }
    this.logger.error('request failed', err);
    return { reason: 'failed', text: messages.failed };
  }

  private async refuse(
    output: ChatOutput,
    reason: RefusalReason,
    text: string,
    extra: { retryAfterMs?: number } = {},
  ): Promise<void> {
    report(output, { type: 'refused', reason, message: text, ...extra });
    await this.say(output, text);
  }

  private async say(output: ChatOutput, text: string): Promise<void> {
    for (const chunk of splitMessage(text, output.maxMessageLength)) await output.send(chunk);
  }
}
