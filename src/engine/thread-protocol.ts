/** The messages between `ThreadedEngine` (the adapters' thread) and `engine-thread.ts` (the model's thread). */
import type { EncodeImageResult, GenerateRequest, GenerateResult } from './api.js';
import type { EngineOptions } from './engine.js';
import type { WireError } from './error-wire.js';

/** `EngineOptions` without the logger: what can be copied to another thread. */
export type ThreadEngineOptions = Omit<EngineOptions, 'logger'>;

export interface ThreadInit {
  modelDir: string;
  options: ThreadEngineOptions;
}

/** A request as it crosses: callbacks and the signal stay behind and become messages. */
export type WireGenerateRequest = Omit<GenerateRequest, 'signal' | 'onToken' | 'onQueuePosition'> & {
  wantTokens: boolean;
  wantPositions: boolean;
};

export type ToThread =
  | { type: 'generate'; id: number; request: WireGenerateRequest }
  | { type: 'encode'; id: number; bytes: Uint8Array }
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export type FromThread =
  | { type: 'ready'; demo: boolean; modelId: string; cacheTag: string }
  | { type: 'load-failed'; error: WireError }
  | { type: 'log'; level: 'info' | 'warn'; message: string }
  | { type: 'position'; id: number; position: number; queueLength: number }
  | { type: 'token'; id: number; token: { id: number; textSoFar: string } }
  | { type: 'result'; id: number; value: GenerateResult | EncodeImageResult; queueLength: number }
  | { type: 'error'; id: number; error: WireError; queueLength: number }
  | { type: 'closed' };
