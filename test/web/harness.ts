/**
 * The web adapter on 127.0.0.1 (any free port) over the real chat core and the real demo engine, plus an engine
 * wrapper whose runs wait for a gate the test opens: queue places, a full queue and timeouts then happen exactly
 * when the test says, with no sleeps.
 */
import Keyv from 'keyv';
import { type RunningWebAdapter, startWebAdapter, type WebAdapterOptions } from '../../adapters/web/index.js';
import { ChatCore } from '../../src/chat/core.js';
import type { ChatSettings } from '../../src/chat/settings.js';
import type { WebConfig } from '../../src/config/config.js';
import type {
  EncodeImageResult,
  GenerateRequest,
  GenerateResult,
  ImageQuestionEngine,
} from '../../src/engine/api.js';
import { InferenceQueue } from '../../src/engine/queue.js';
import { silentLogger } from '../../src/util/logger.js';
import { FAST_GENERATION } from '../chat/engine-fixture.js';

/** Runs the real engine, but each run first waits, inside a real InferenceQueue, until the gate is open. */
export class GatedEngine implements ImageQuestionEngine {
  private readonly queue: InferenceQueue;
  private gate: Promise<void> = Promise.resolve();
  private openGate: () => void = () => {};
  /** Runs that have reached the gate (the running one, when it is closed). */
  arrived = 0;

  constructor(
    readonly inner: ImageQuestionEngine,
    capacity = 20,
  ) {
    this.queue = new InferenceQueue({ capacity });
  }

  get demo(): boolean {
    return this.inner.demo;
  }
  get modelId(): string {
    return this.inner.modelId;
  }
  get queueLength(): number {
    return this.queue.length;
  }

  /** From now on runs wait until `release()`. */
  hold(): void {
    this.gate = new Promise((resolve) => {
      this.openGate = resolve;
    });
  }

  release(): void {
    this.openGate();
    this.gate = Promise.resolve();
  }

  /** The inner engine belongs to the test's fixture, which closes it. */
  async close(): Promise<void> {}

  imageKey(bytes: Uint8Array): string {
    return this.inner.imageKey!(bytes);
  }

  encodeImage(bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<string> {
    return this.inner.encodeImage(bytes, options);
  }

  encodeImageDetailed(bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<EncodeImageResult> {
    return this.inner.encodeImageDetailed!(bytes, options);
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    return this.queue.run(
      async (signal) => {
        this.arrived++;
        await Promise.race([
          this.gate,
          new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
        ]);
        const { onQueuePosition: _, ...rest } = request;
        return this.inner.generate({ ...rest, signal });
      },
      {
        ...(request.signal ? { signal: request.signal } : {}),
        ...(request.timeoutMs ? { timeoutMs: request.timeoutMs } : {}),
        ...(request.onQueuePosition ? { onPosition: request.onQueuePosition } : {}),
      },
    );
  }
}

export interface WebServer {
  url: string;
  core: ChatCore;
  /** The core's conversation store. */
  conversations: Keyv;
  adapter: RunningWebAdapter;
  stop(): Promise<void>;
}

export const WEB_CONFIG: WebConfig = {
  host: '127.0.0.1',
  port: 0,
  portSet: true,
  corsOrigins: [],
  imageUrlHosts: [],
};

export async function startWebServer(
  engine: ImageQuestionEngine,
  options: {
    settings?: Partial<ChatSettings>;
    config?: Partial<WebConfig>;
    resolver?: WebAdapterOptions['resolver'];
    isBlockedAddress?: WebAdapterOptions['isBlockedAddress'];
  } = {},
): Promise<WebServer> {
  const conversations = new Keyv({ namespace: 'conversations' });
  const core = new ChatCore({
    engine,
    conversations,
    settings: { rateLimitPerMinute: 0, generation: FAST_GENERATION, ...options.settings },
  });
  const adapter = await startWebAdapter({
    core,
    engine,
    config: { ...WEB_CONFIG, ...options.config },
    threads: new Keyv({ namespace: 'web-threads' }),
    logger: silentLogger,
    ...(options.resolver ? { resolver: options.resolver } : {}),
    ...(options.isBlockedAddress ? { isBlockedAddress: options.isBlockedAddress } : {}),
  });
  return {
    url: adapter.url.replace(/\/$/, ''),
    core,
    conversations,
    adapter,
    async stop() {
      await core.shutdown(1_000);
      await adapter.stop();
    },
  };
}

/** A parsed JSON body, read loosely: the assertions that read it check its shape. */
// biome-ignore lint/suspicious/noExplicitAny: the shape is what the tests assert.
export type Json = any;

export async function json(response: Response | Promise<Response>): Promise<Json> {
  return (await response).json();
}

/** Reads a server-sent-events body into its events. */
export async function readEvents(response: Response): Promise<Array<{ event: string; data: Json }>> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.trim())
    .map((block) => {
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      return { event, data: data === '[DONE]' ? data : JSON.parse(data) };
    });
}

/** Polls until `check` holds (used only to wait for a state the test caused, never as a delay). */
export async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
