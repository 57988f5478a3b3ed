/**
 * `Blip2Engine`: image bytes and a question in, an answer out, as HF transformers would compute it. It owns the
 * model sessions, the tokenizer, the per-image cache of query embeddings and the one-at-a-time inference queue.
 */

import type Keyv from 'keyv';
import { generationTokenIds } from '../model/config.js';
import { closeKeyv, createKeyv, type StoreOptions } from '../storage/keyv-store.js';
import type { Logger } from '../util/logger.js';
import type {
  EncodeImageResult,
  GenerateRequest,
  GenerateResult,
  ImageQuestionEngine,
  Task,
  Timings,
} from './api.js';
import { ImageError, InputError } from './errors.js';
import { generateTokens } from './generation/generate.js';
import { resolveGenerationOptions } from './generation/options.js';
import { ImageCache } from './image-cache.js';
import { Blip2Model, type FloatTensor, type ModelDecodeBatch, type ModelLoadOptions } from './model.js';
import {
  type PreprocessOptions,
  type PreprocessorConfig,
  parsePreprocessorConfig,
  preprocessCacheTag,
  preprocessImage,
} from './preprocess.js';
import { buildPrompt, promptStyleFor } from './prompt.js';
import { DEFAULT_QUEUE_CAPACITY, InferenceQueue } from './queue.js';
import { type Blip2Tokenizer, loadTokenizer } from './tokenizer.js';

/** What the engine logs through: the bot's Logger (src/util/logger.ts) or anything with its `warn`. */
export type EngineLogger = Pick<Logger, 'warn'> & Partial<Pick<Logger, 'info'>>;

export interface EngineOptions extends ModelLoadOptions {
  /** Where the image cache lives; default: a SQLite file in `dataDir`. */
  store?: StoreOptions;
  /** Default data dir for the SQLite store (default `data`). */
  dataDir?: string;
  /** Image cache entries expire after this long; 0 / undefined = never. */
  cacheTtlMs?: number;
  /** How many requests may wait behind the running ones (default 20). */
  queueCapacity?: number;
  /**
   * How many requests may be in flight at once, their decode steps merged into one decoder batch (default 8;
   * 1 = one request at a time). Models whose decoder cannot mask padded rows (converted before batching) always
   * run one request at a time.
   */
  batchRequests?: number;
  /** Default per-request limit, waiting included (default 120 s; 0 = none). */
  requestTimeoutMs?: number;
  preprocess?: PreprocessOptions;
  /**
   * Prompt budget in tokens, query tokens included (FlanT5 default 512, its trained length; OPT: its position
   * table, max_position_embeddings, less the tokens the request may generate).
   */
  encoderBudget?: number;
  logger?: EngineLogger;
}

const DEFAULT_TIMEOUT_MS = 120_000;
/** Eight people at once: a decoder step that streams the weights once costs nearly the same for 40 rows as for 1. */
export const DEFAULT_BATCH_REQUESTS = 8;
const DEFAULT_ENCODER_BUDGET = 512;

function since(start: number): number {
  return performance.now() - start;
}

function emptyTimings(): Timings {
  return {
    queueMs: 0,
    preprocessMs: 0,
    visionMs: 0,
    qformerMs: 0,
    encoderMs: 0,
    decodeMs: 0,
    decodeSteps: 0,
    totalMs: 0,
  };
}

export class Blip2Engine implements ImageQuestionEngine {
  private readonly queue: InferenceQueue;
  private readonly cacheTag: string;
  /** The decode steps of every request in flight run through this one batch. */
  readonly decodeBatch: ModelDecodeBatch;

  private constructor(
    readonly model: Blip2Model,
    readonly tokenizer: Blip2Tokenizer,
    readonly cache: ImageCache,
    private readonly cacheStore: Keyv,
    private readonly preprocessorConfig: PreprocessorConfig,
    private readonly options: EngineOptions,
  ) {
    this.decodeBatch = model.createDecodeBatch();
    const batchRequests = options.batchRequests ?? DEFAULT_BATCH_REQUESTS;
    if (!Number.isInteger(batchRequests) || batchRequests < 1) {
      throw new RangeError(`batchRequests must be a whole number >= 1, got ${options.batchRequests}`);
    }
    this.queue = new InferenceQueue({
      capacity: options.queueCapacity ?? DEFAULT_QUEUE_CAPACITY,
      defaultTimeoutMs: options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      // Several requests in flight only pay when their decode steps merge; the model runs sessions one at a time.
      concurrency: this.decodeBatch.batch.graph.canMerge ? batchRequests : 1,
    });
    this.cacheTag = preprocessCacheTag(options.preprocess);
  }

  static async load(modelDir: string, options: EngineOptions = {}): Promise<Blip2Engine> {
    const model = await Blip2Model.load(modelDir, options);
    try {
      const tokenizer = await loadTokenizer(modelDir, model.config.languageModel);
      const preprocessorConfig = parsePreprocessorConfig(await model.preprocessorConfig());
      const store: StoreOptions = options.store ?? { kind: 'sqlite', dataDir: options.dataDir ?? 'data' };
      const keyv = createKeyv(store, 'images', {
        onError: (e) => options.logger?.warn(`image cache error: ${String(e)}`),
      });
      const cache = new ImageCache(keyv, {
        ...(options.cacheTtlMs ? { ttlMs: options.cacheTtlMs } : {}),
        ...(options.logger ? { logger: { warn: (m: string) => options.logger!.warn(m) } } : {}),
      });
      return new Blip2Engine(model, tokenizer, cache, keyv, preprocessorConfig, options);
    } catch (e) {
      await model.release();
      throw e;
    }
  }

  get demo(): boolean {
    return this.model.demo;
  }

  get modelId(): string {
    return this.model.modelId;
  }

  get queueLength(): number {
    return this.queue.length;
  }

  /** The cache key of these image bytes for this model and preprocessing. */
  imageKey(bytes: Uint8Array): string {
    return ImageCache.imageKey(bytes, this.modelId, this.cacheTag);
  }

  /** Preprocess → vision → Q-Former, unless the cache already has the image. Runs inside the queue. */
  private async queryEmbedsFor(
    bytes: Uint8Array,
    timings: Timings,
    key = this.imageKey(bytes),
  ): Promise<{ key: string; embeds: FloatTensor; cached: boolean }> {
    const hit = await this.cache.get(key);
    if (hit) return { key, embeds: hit, cached: true };
    const t = performance.now();
    const pixels = await preprocessImage(bytes, this.preprocessorConfig, this.options.preprocess);
    timings.preprocessMs += since(t);
    const queryEmbeds = await this.queryEmbedsFromPixels(
      { data: pixels.data, dims: [...pixels.dims] },
      timings,
    );
    await this.cache.set(key, queryEmbeds);
    return { key, embeds: queryEmbeds, cached: false };
  }

  private async queryEmbedsFromPixels(pixels: FloatTensor, timings: Timings): Promise<FloatTensor> {
    let t = performance.now();
    const image = await this.model.visionEncode(pixels);
    timings.visionMs += since(t);
    t = performance.now();
    const { queryEmbeds } = await this.model.queryEncode(image);
    timings.qformerMs += since(t);
    return queryEmbeds;
  }

  async encodeImage(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<string> {
    return (await this.encodeImageDetailed(bytes, options)).key;
  }

  async encodeImageDetailed(
    bytes: Uint8Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<EncodeImageResult> {
    // Hashing a large upload is not free: the key is computed once and handed on.
    const key = this.imageKey(bytes);
    const timings = emptyTimings();
    const spent = () => ({
      preprocessMs: timings.preprocessMs,
      visionMs: timings.visionMs,
      qformerMs: timings.qformerMs,
    });
    if (await this.cache.has(key)) return { key, cached: true, timings: spent() };
    return this.queue.run(
      async () => {
        const r = await this.queryEmbedsFor(bytes, timings, key);
        return { key: r.key, cached: r.cached, timings: spent() };
      },
      options.signal ? { signal: options.signal } : {},
    );
  }

  /** The prompt's ids, and the task whose generation defaults apply (a free-form prompt is a caption prefix). */
  private promptIds(
    request: GenerateRequest,
    queryTokens: number,
  ): { ids: number[]; task: Task; droppedTurns: number } {
    const requested: Task = request.task ?? (request.question !== undefined ? 'question' : 'caption');
    const config = this.model.config;
    if (request.inputIds) {
      if (request.inputIds.length === 0) throw new InputError('The prompt is empty.');
      // Past the embedding table onnxruntime's Gather fails with an internal error: say which id is wrong.
      const vocabSize = config.text.vocabSize;
      const bad = request.inputIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
      if (bad !== undefined) {
        throw new InputError(
          `Token id ${bad} is not in the model's vocabulary: ids go from 0 to ${vocabSize - 1}.`,
          'input_ids',
        );
      }
      const budget = this.promptBudget(request, queryTokens);
      if (request.inputIds.length > budget) {
        throw new InputError(
          `Your prompt is too long: it has ${request.inputIds.length} ids and at most ${budget} fit.`,
          'input_ids',
        );
      }
      return { ids: [...request.inputIds], task: requested, droppedTurns: 0 };
    }
    const style = promptStyleFor(config.languageModel);
    const budget = this.promptBudget(request, queryTokens);
    const built = buildPrompt(
      {
        task: requested,
        ...(request.prompt !== undefined ? { prompt: request.prompt } : {}),
        ...(request.question !== undefined ? { question: request.question } : {}),
        ...(request.history ? { history: request.history } : {}),
      },
      (text) => this.tokenizer.countTokens(text),
      budget,
      style,
    );
    return { ids: this.tokenizer.encode(built.text), task: built.task, droppedTurns: built.droppedTurns };
  }

  /** Tokens the prompt text may take. OPT's prompt and answer share one position table. */
  private promptBudget(request: GenerateRequest, queryTokens: number): number {
    const config = this.model.config;
    if (config.languageModel !== 'opt') {
      return (this.options.encoderBudget ?? DEFAULT_ENCODER_BUDGET) - queryTokens;
    }
    const positions = config.text.maxPositionEmbeddings;
    const task: Task =
      request.prompt !== undefined
        ? 'caption'
        : (request.task ?? (request.question !== undefined ? 'question' : 'caption'));
    const answer = resolveGenerationOptions(
      task,
      request.options ?? {},
      generationTokenIds(config),
    ).maxNewTokens;
    return Math.min(this.options.encoderBudget ?? positions, positions - answer) - queryTokens;
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const enqueued = performance.now();
    const runOptions = {
      ...(request.signal ? { signal: request.signal } : {}),
      ...(request.timeoutMs !== undefined ? { timeoutMs: request.timeoutMs } : {}),
      ...(request.onQueuePosition ? { onPosition: request.onQueuePosition } : {}),
    };
    return this.queue.run(async (signal) => {
      const timings = emptyTimings();
      timings.queueMs = since(enqueued);
      const started = performance.now();

      let embeds: FloatTensor | undefined;
      let imageCached = false;
      let imageKey: string | undefined;
      if (typeof request.image === 'string') {
        imageKey = request.image;
        embeds = await this.cache.get(request.image);
        if (!embeds) {
          throw new ImageError('expired', 'I no longer have that picture in my cache. Please send it again.');
        }
        imageCached = true;
      } else if (request.image instanceof Uint8Array) {
        const r = await this.queryEmbedsFor(request.image, timings);
        embeds = r.embeds;
        imageCached = r.cached;
        imageKey = r.key;
      } else if (request.image) {
        embeds = await this.queryEmbedsFromPixels(request.image.pixelValues, timings);
      }
      signal.throwIfAborted();

      const { ids: inputIds, task, droppedTurns } = this.promptIds(request, embeds?.dims[1] ?? 0);
      const config = this.model.config;
      const options = resolveGenerationOptions(task, request.options ?? {}, generationTokenIds(config));
      if (
        config.languageModel === 'opt' &&
        (embeds?.dims[1] ?? 0) + inputIds.length + options.maxNewTokens > config.text.maxPositionEmbeddings
      ) {
        throw new InputError(
          `The prompt and answer do not fit this model: at most ${config.text.maxPositionEmbeddings} positions, image included. Please shorten the prompt or ask for fewer new tokens.`,
        );
      }

      let mark = performance.now();
      const state = await this.model.encode(embeds, inputIds);
      timings.encoderMs = since(mark);
      signal.throwIfAborted();

      mark = performance.now();
      const onToken = request.onToken;
      const member = this.decodeBatch.join(state);
      let result: Awaited<ReturnType<typeof generateTokens>>;
      try {
        result = await generateTokens(member, options, {
          signal,
          ...(onToken
            ? {
                onToken: (id: number, idsSoFar: number[]) =>
                  onToken({ id, textSoFar: this.tokenizer.decode(idsSoFar) }),
              }
            : {}),
        });
      } finally {
        member.leave();
      }
      timings.decodeMs = since(mark);
      // OPT's first token comes from the prefill (timed as the encoder): count only the decoder runs.
      timings.decodeSteps = config.languageModel === 'opt' ? Math.max(0, result.steps - 1) : result.steps;
      timings.totalMs = since(started) + timings.queueMs;
      // OPT ends its answers with "\n" (its eos); LAVIS strips the decoded text.
      const text = this.tokenizer.decode(result.ids);
      return {
        text: config.languageModel === 'opt' ? text.trim() : text,
        ids: result.ids,
        timings,
        imageCached,
        droppedTurns,
        promptTokens: inputIds.length + (embeds?.dims[1] ?? 0),
        demo: this.demo,
        ...(imageKey ? { imageKey } : {}),
      };
    }, runOptions);
  }

  /** Finishes the running request, refuses waiting ones, releases sessions and the cache store. */
  async close(): Promise<void> {
    await this.queue.close();
    await this.model.release();
    await closeKeyv(this.cacheStore);
  }
}
