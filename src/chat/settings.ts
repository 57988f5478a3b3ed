import type { GenerationOptions } from '../engine/api.js';

/** Who may use the bot. An empty list allows everyone; every non-empty list must match. */
export interface AllowList {
  servers: readonly string[];
  channels: readonly string[];
  users: readonly string[];
  /** 'ignore': say nothing to people outside the lists; 'tell': answer once that the bot is not enabled here. */
  mode: 'ignore' | 'tell';
}

export interface ChatSettings {
  /** Largest image accepted, checked against the declared size and again while downloading. */
  maxImageBytes: number;
  /** Whole request limit: download, queue wait and inference. */
  requestTimeoutMs: number;
  /** Requests per user per rolling minute; 0 turns the limit off. */
  rateLimitPerMinute: number;
  allowList: AllowList;
  /** How often the typing signal is renewed; Discord's expires after 10 s. */
  typingIntervalMs: number;
  /** How long a conversation is remembered after its last message; 0 = until the store drops it. */
  conversationTtlMs: number;
  /** Longest question accepted, in characters. */
  maxQuestionChars: number;
  /** Turns kept per conversation (the engine drops older ones that do not fit its prompt budget). */
  maxStoredTurns: number;
  /** Overrides of the engine's LAVIS defaults per task. */
  generation?: { caption?: GenerationOptions; question?: GenerationOptions };
}

export const DEFAULT_CHAT_SETTINGS: ChatSettings = {
  maxImageBytes: 20 * 1024 * 1024,
  requestTimeoutMs: 120_000,
  rateLimitPerMinute: 6,
  allowList: { servers: [], channels: [], users: [], mode: 'ignore' },
  typingIntervalMs: 8_000,
  conversationTtlMs: 7 * 24 * 3600 * 1000,
  maxQuestionChars: 1_000,
  maxStoredTurns: 20,
};
