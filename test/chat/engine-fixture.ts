/**
 * The engine every chat and adapter test uses: the real Blip2Engine on the seeded demo model (written once under
 * models/demo by the real converter), wrapped so tests can see what it was asked and whether the image cache hit.
 */
import type { ChatSettings } from '../../src/chat/settings.js';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import type {
  EncodeImageResult,
  GenerateRequest,
  GenerateResult,
  ImageQuestionEngine,
} from '../../src/engine/api.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import type { StoreOptions } from '../../src/storage/keyv-store.js';

/** Greedy and short: the demo model's text is random anyway, and the suite stays fast. */
export const FAST_GENERATION: NonNullable<ChatSettings['generation']> = {
  caption: { numBeams: 1, maxNewTokens: 6 },
  question: { numBeams: 1, maxNewTokens: 6 },
};

export interface EngineFixtureOptions {
  /** Where the image cache lives; memory by default. */
  store?: StoreOptions;
  queueCapacity?: number;
  /** Requests in flight at once (engine default 8); 1 here unless a test asks. */
  batchRequests?: number;
}

/** Delegates to the engine and records what it did, so tests can see cache hits and vision runs. */
export class RecordingEngine implements ImageQuestionEngine {
  /** Pictures sent for encoding: `encodeImage` calls and requests that carried the bytes themselves. */
  encodeCalls = 0;
  readonly requests: GenerateRequest[] = [];
  readonly results: GenerateResult[] = [];
  readonly positions: number[] = [];
  /** While set, generate() waits for it after recording the request: a test holds a job "running". */
  gate: Promise<void> | undefined;

  constructor(readonly inner: ImageQuestionEngine) {}

  get demo(): boolean {
    return this.inner.demo;
  }
  get modelId(): string {
    return this.inner.modelId;
  }
  get queueLength(): number {
    return this.inner.queueLength;
  }

  encodeImage(bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<string> {
    this.encodeCalls++;
    return this.inner.encodeImage(bytes, options);
  }

  async encodeImageDetailed(
    bytes: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<EncodeImageResult> {
    this.encodeCalls++;
    if (this.inner.encodeImageDetailed) return this.inner.encodeImageDetailed(bytes, options);
    const key = await this.inner.encodeImage(bytes, options);
    return { key, cached: false, timings: { preprocessMs: 0, visionMs: 0, qformerMs: 0 } };
  }

  imageKey(bytes: Uint8Array): string {
    if (!this.inner.imageKey) throw new Error('the inner engine computes no image keys');
    return this.inner.imageKey(bytes);
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.requests.push(request);
    if (request.image instanceof Uint8Array) this.encodeCalls++;
    if (this.gate) await this.gate;
    const onQueuePosition = request.onQueuePosition;
    const result = await this.inner.generate({
      ...request,
      onQueuePosition: (position) => {
        this.positions.push(position);
        onQueuePosition?.(position);
      },
    });
    this.results.push(result);
    return result;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface EngineFixture {
  engine: RecordingEngine;
  close(): Promise<void>;
}

async function loadEngine(options: EngineFixtureOptions): Promise<ImageQuestionEngine> {
  return Blip2Engine.load(await ensureDemoModel(), {
    store: options.store ?? { kind: 'memory' },
    queueCapacity: options.queueCapacity ?? 20,
    // One request at a time (the engine's default lets 8 decode together): a handful of requests then queue, so
    // the core's queue notices and "busy" answers can be seen.
    batchRequests: options.batchRequests ?? 1,
  });
}

export async function openTestEngine(options: EngineFixtureOptions = {}): Promise<EngineFixture> {
  const engine = await loadEngine(options);
  return { engine: new RecordingEngine(engine), close: () => engine.close() };
}
