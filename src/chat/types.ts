/**
 * The platform-neutral chat contract. Adapters (Discord, Slack, local terminal, web) translate platform events
 * into `ChatMessage`s and implement `ChatOutput`; the chat core never sees a platform type.
 */
import type { GenerateResult, GenerationOptions, Turn } from '../engine/api.js';

// The engine's request and result types an adapter may need (the web API passes generation options through),
// re-exported so adapters depend on the chat layer only.
export type { GenerationOptions, ImageQuestionEngine, Timings, Turn } from '../engine/api.js';

export type Platform = 'discord' | 'slack' | 'local' | 'web';

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
  /** Generation settings chosen for this one request (the web playground's and the OpenAI API's knobs). */
  options?: GenerationOptions;
  /**
   * The earlier exchanges as the client sends them, instead of the stored ones: stateless clients (OpenAI's API)
   * resend the whole conversation with every request.
   */
  history?: Turn[];
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
  /**
   * How to give the bot a picture here, in the platform's own words (its command's name: `/describe`,
   * `/image <path>`); said when a question comes without one. Default: `messages.noPicture`.
   */
  readonly usageHint?: string;
  send(text: string): Promise<PostedMessage>;
  edit(message: PostedMessage, text: string): Promise<void>;
  /** Removes a posted message; where an edit fails, a stale queue notice is deleted instead. Optional. */
  delete?(message: PostedMessage): Promise<void>;
  /** Shows a "working on it" signal; the core calls it again while a job runs. */
  showTyping(): Promise<void>;
  /**
   * Optional, JSON: where this output answers, so the adapter can rebuild it in another process
   * (`ResumeOutputFactory`) should this one die before the answer comes (scaled out). Absent: nobody else can.
   */
  readonly resumeTarget?: unknown;
  /**
   * Optional: the facts behind the texts, for adapters that answer with data (the web API) rather than messages,
   * or act on the outcome (an adopted Discord `/describe` opens its thread once answered).
   * Called synchronously; it must not throw.
   */
  report?(event: ChatEvent): void;
}

/** Why the core answered with one of its polite messages instead of a model answer. */
export type RefusalReason =
  | 'not_allowed'
  | 'shutting_down'
  | 'no_picture'
  | 'question_too_long'
  | 'rate_limited'
  | 'timeout'
  | 'expired'
  /** An error with its own `userMessage` (ImageError, InputError, QueueFullError, DownloadError, ...). */
  | 'rejected'
  | 'failed';

export type ChatEvent =
  | { type: 'queued'; position: number }
  | { type: 'token'; textSoFar: string }
  | {
      type: 'answered';
      task: 'caption' | 'question';
      question: string;
      /** The model's text as it came, before the core's notes are added. */
      answer: string;
      /** The core's remarks shown under the answer (several pictures, new picture, dropped turns). */
      notes: string[];
      /** What the person is shown: the answer, the notes and the demo-model notice. */
      text: string;
      imageName: string;
      result: GenerateResult;
    }
  | {
      type: 'refused';
      reason: RefusalReason;
      message: string;
      /** rate_limited: how long until a request is allowed again. */
      retryAfterMs?: number;
      /** rejected: the error whose userMessage was shown, so an adapter can pick a status from its kind. */
      error?: unknown;
    };

/** An adapter's way back to a conversation from a `ChatOutput.resumeTarget`, in any process. */
export type ResumeOutputFactory = (target: unknown) => ChatOutput | Promise<ChatOutput>;

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
  /** Registers how the platform's outputs are rebuilt from their `resumeTarget` (a dead front's answers). */
  resumeOutputs?(platform: Platform, factory: ResumeOutputFactory): void;
}

/** A started platform adapter, so `blip2-bot start` can stop them all on SIGINT/SIGTERM. */
export interface RunningAdapter {
  readonly name: string;
  stop(): Promise<void>;
}
