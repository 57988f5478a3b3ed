/**
 * `ThreadedEngine`: the `ImageQuestionEngine` the bot serves people with. It runs a `Blip2Engine` in a worker
 * thread (engine-thread.ts) because onnxruntime-node's `session.run` holds the calling JavaScript thread for the
 * whole run (microsoft/onnxruntime#19611): at full size a vision run would stall Slack acks, Discord heartbeats
 * and HTTP for up to a second and a half. Calls are forwarded generically — request ids, callbacks as messages,
 * an aborted signal as a cancel message, errors re-created as the same classes (error-wire.ts).
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UserFacingError } from '../errors.js';
import type { EncodeImageResult, GenerateRequest, GenerateResult, ImageQuestionEngine } from './api.js';
import type { EngineLogger } from './engine.js';
import { fromWire } from './error-wire.js';
import { RequestAbortedError } from './errors.js';
import { ImageCache } from './image-cache.js';
import type { FromThread, ThreadEngineOptions, ThreadInit, ToThread } from './thread-protocol.js';

/** The model's thread stopped (a crash, an out-of-memory kill): in-flight and later requests get this. */
export class EngineStoppedError extends UserFacingError {
  override name = 'EngineStoppedError';
  constructor(detail: string) {
    super('engine_stopped', `the model's thread stopped: ${detail}`, {
      userMessage: 'Sorry, the model stopped while working on this. Please try again in a moment.',
    });
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  onToken?: GenerateRequest['onToken'];
  onQueuePosition?: GenerateRequest['onQueuePosition'];
  detach(): void;
}

/** The worker's entry: the TypeScript source in a checkout (through tsx, as bin/blip2-bot.js does), else the build. */
function threadEntry(): { code: string } | { url: URL } {
  const here = fileURLToPath(import.meta.url);
  if (extname(here) !== '.ts') return { url: new URL('./engine-thread.js', import.meta.url) };
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./engine-thread.ts', import.meta.url).href;
  return {
    code: `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`,
  };
}

export class ThreadedEngine implements ImageQuestionEngine {
  #queueLength = 0;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #stopped: EngineStoppedError | undefined;
  #closing: Promise<void> | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly demo: boolean,
    readonly modelId: string,
    /** The preprocessing part of this model's image keys (fronts compute the same keys from it). */
    readonly cacheTag: string,
    private readonly logger: EngineLogger | undefined,
  ) {
    worker.on('message', (message: FromThread) => this.#receive(message));
    worker.on('error', (error) => this.#stop(error.message));
    worker.on('exit', (code) => this.#stop(`exited with code ${code}`));
  }

  /** Loads the model in a new worker thread; rejects with the load's own error (same class) when it fails. */
  static async load(
    modelDir: string,
    options: ThreadEngineOptions & { logger?: EngineLogger } = {},
  ): Promise<ThreadedEngine> {
    const { logger, ...copyable } = options;
    const init: ThreadInit = { modelDir, options: copyable };
    const entry = threadEntry();
    const worker =
      'code' in entry
        ? new Worker(entry.code, { eval: true, workerData: init })
        : new Worker(entry.url, { workerData: init });
    const ready = await new Promise<FromThread & { type: 'ready' }>((resolve, reject) => {
      const onMessage = (message: FromThread) => {
        if (message.type === 'log') logMessage(logger, message);
        else if (message.type === 'ready') done(() => resolve(message));
        else if (message.type === 'load-failed') done(() => reject(fromWire(message.error)));
      };
      const onError = (error: Error) => done(() => reject(error));
      const onExit = (code: number) =>
        done(() => reject(new EngineStoppedError(`exited with code ${code} while loading`)));
      const done = (settle: () => void) => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        settle();
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (error) => {
      // Safe here: the load failed, so no session.run is in progress. terminate() during a run aborts the whole
      // process (onnxruntime-node throws a C++ Napi::Error into a stopping thread), so close() asks instead.
      await worker.terminate();
      throw error;
    });
    return new ThreadedEngine(worker, ready.demo, ready.modelId, ready.cacheTag, logger);
  }

  get queueLength(): number {
    return this.#queueLength;
  }

  /** The same key the model's thread computes, without a round trip. */
  imageKey(bytes: Uint8Array): string {
    return ImageCache.imageKey(bytes, this.modelId, this.cacheTag);
  }

  async encodeImage(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<string> {
    return (await this.encodeImageDetailed(bytes, options)).key;
  }

  encodeImageDetailed(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<EncodeImageResult> {
    return this.#call((id) => ({ type: 'encode', id, bytes }), options.signal, {});
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    const { signal, onToken, onQueuePosition, ...rest } = request;
    return this.#call(
      (id) => ({
        type: 'generate',
        id,
        request: { ...rest, wantTokens: Boolean(onToken), wantPositions: Boolean(onQueuePosition) },
      }),
      signal,
      { ...(onToken ? { onToken } : {}), ...(onQueuePosition ? { onQueuePosition } : {}) },
    );
  }

  /** Lets the running request finish, refuses waiting ones, and ends the thread. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#stopped) return;
      const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
      this.#post({ type: 'close' });
      await exited;
    })();
    return this.#closing;
  }

  #call<T>(
    message: (id: number) => ToThread,
    signal: AbortSignal | undefined,
    callbacks: Pick<Pending, 'onToken' | 'onQueuePosition'>,
  ): Promise<T> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (signal?.aborted) return Promise.reject(new RequestAbortedError({ cause: signal.reason }));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      // The caller hears of an abort at once, as from the in-process queue; the thread stops the job when it
      // next looks at its signal (between graph runs).
      const onAbort = () => {
        this.#post({ type: 'cancel', id });
        this.#settle(id)?.reject(new RequestAbortedError({ cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
        ...callbacks,
        detach: () => signal?.removeEventListener('abort', onAbort),
      });
      this.#post(message(id));
    });
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (!pending) return undefined;
    this.#pending.delete(id);
    pending.detach();
    return pending;
  }

  #post(message: ToThread): void {
    try {
      this.worker.postMessage(message);
    } catch (error) {
      this.#stop((error as Error).message);
    }
  }

  #receive(message: FromThread): void {
    switch (message.type) {
      case 'log':
        logMessage(this.logger, message);
        break;
      case 'position':
        this.#queueLength = message.queueLength;
        this.#pending.get(message.id)?.onQueuePosition?.(message.position);
        break;
      case 'token':
        this.#pending.get(message.id)?.onToken?.(message.token);
        break;
      case 'result':
        this.#queueLength = message.queueLength;
        this.#settle(message.id)?.resolve(message.value);
        break;
      case 'error':
        this.#queueLength = message.queueLength;
        this.#settle(message.id)?.reject(fromWire(message.error));
        break;
      default:
        break;
    }
  }

  /** The thread is gone: every waiting caller gets a clear error now instead of waiting forever. */
  #stop(detail: string): void {
    if (this.#stopped) return;
    this.#stopped = new EngineStoppedError(detail);
    if (!this.#closing) this.logger?.warn(`the model's thread stopped: ${detail}`);
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(this.#stopped);
    this.#queueLength = 0;
  }
}

function logMessage(logger: EngineLogger | undefined, message: FromThread & { type: 'log' }): void {
  if (message.level === 'warn') logger?.warn(message.message);
  else logger?.info?.(message.message);
}
