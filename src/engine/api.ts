/**
 * The engine's public contract: what the chat core and the CLI may rely on. The implementation is
 * `Blip2Engine` (engine.ts); keep this file free of onnxruntime and sharp types.
 */

export type Task = 'caption' | 'question';

export interface GenerationOptions {
  numBeams?: number;
  maxNewTokens?: number;
  minNewTokens?: number;
  /** HF semantics: a finished beam scores sum(logprobs) / length ** lengthPenalty. */
  lengthPenalty?: number;
  /** true: stop when num_beams hypotheses are done; false: HF's heuristic; 'never': the canonical test. */
  earlyStopping?: boolean | 'never';
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  repetitionPenalty?: number;
  noRepeatNgramSize?: number;
  /** Keep generating past `</s>` (benchmarks use it for fixed-length runs). */
  ignoreEos?: boolean;
}

/** One earlier exchange about the same image, oldest first. */
export interface Turn {
  question: string;
  answer: string;
}

export interface GenerateRequest {
  /**
   * An image key from `encodeImage`, raw image bytes (encoded and cached on the way), already preprocessed
   * `pixel_values` [1, 3, H, W] (parity checks; not cached), or omitted for a text-only prompt.
   */
  image?: string | Uint8Array | { pixelValues: { data: Float32Array; dims: number[] } };
  /** Default task when neither `prompt`, `question` nor `inputIds` is given: 'caption'. */
  task?: Task;
  /** Free-form prompt (caption prefix such as "a photo of"); used verbatim. */
  prompt?: string;
  /** A question, formatted LAVIS-style with `history`. */
  question?: string;
  history?: Turn[];
  /** Full prompt ids (`</s>` included), bypassing prompt formatting and the tokenizer. */
  inputIds?: number[];
  options?: GenerationOptions;
  signal?: AbortSignal;
  /** Per-request limit, queue wait included. */
  timeoutMs?: number;
  /** Streaming: called after each generated token of the best (greedy/sampled) sequence. */
  onToken?: (token: { id: number; textSoFar: string }) => void;
  /** Called while the request waits: 1 = next to run. */
  onQueuePosition?: (position: number) => void;
  /** Names the request in logs and, scaled out, its queue job (one job per id: a redelivery is not re-run). */
  requestId?: string;
  /**
   * Who is owed the answer, should the process that asked die before it comes (scaled out: another front then
   * delivers it, see `onOrphan`). Opaque JSON written by the chat core; in-process engines ignore it.
   */
  delivery?: DeliveryTicket;
}

/** JSON the chat core writes and reads back; the engine stores it and never looks inside. */
export type DeliveryTicket = { readonly [field: string]: unknown };

/**
 * A request whose asking process died (a front SIGKILLed) and whose outcome is now known: its `result`, the
 * `error` it failed with, or neither when the job itself is gone (the person's request was lost).
 */
export interface OrphanedRequest {
  requestId: string;
  delivery: DeliveryTicket;
  result?: GenerateResult;
  error?: unknown;
}

/** What the chat core registers with an engine that can hand it other processes' orphaned requests. */
export interface OrphanHandler {
  /** Whether this process can deliver the ticket now (its platform's adapter is up); false: ask again later. */
  accepts(delivery: DeliveryTicket): boolean;
  /** Finishes the turn and tells the person; called once per orphan across every process. */
  deliver(orphan: OrphanedRequest): Promise<void>;
}

export interface Timings {
  queueMs: number;
  preprocessMs: number;
  visionMs: number;
  qformerMs: number;
  /** The prompt: FlanT5's encoder and cross K/V, or OPT's prefill (which also yields the first token's logits). */
  encoderMs: number;
  decodeMs: number;
  /** Decoder graph runs. */
  decodeSteps: number;
  totalMs: number;
}

export interface GenerateResult {
  text: string;
  /** Generated ids after the decoder start token, `</s>` included when produced (as HF returns them). */
  ids: number[];
  timings: Timings;
  /** True when the image's query embeddings came from the cache (no vision / Q-Former run). */
  imageCached: boolean;
  /** How many of the oldest history turns were dropped to fit the encoder budget. */
  droppedTurns: number;
  /** Length of the encoder's input: the image's query tokens plus the prompt's token ids. */
  promptTokens: number;
  /** True on the seeded demo model: the text is meaningless. */
  demo: boolean;
  /** The image key of the request's picture (bytes sent with the request are encoded and cached under it). */
  imageKey?: string;
}

export interface EncodeImageResult {
  key: string;
  cached: boolean;
  /** The stages this call ran (all 0 when the picture was cached). */
  timings: Pick<Timings, 'preprocessMs' | 'visionMs' | 'qformerMs'>;
}

/** What the chat core needs from an engine. */
export interface ImageQuestionEngine {
  readonly demo: boolean;
  readonly modelId: string;
  /** The cache key of these bytes, computed without queueing (the chat core keys the conversation by it). */
  imageKey?(bytes: Uint8Array): string;
  encodeImage(bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<string>;
  /** `encodeImage` that also says whether the cache had the picture and what encoding it cost. */
  encodeImageDetailed?(bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<EncodeImageResult>;
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** Requests waiting, not counting the running one. */
  readonly queueLength: number;
  /**
   * Scaled out (QueueEngine): hands this process the requests of dead fronts, once each. Engines whose requests
   * live and die with their process have none.
   */
  onOrphan?(handler: OrphanHandler): void;
  /**
   * Scaled out: replaces a request's delivery ticket while it is still owed (the chat core adds the queue notice
   * it posted, so a front that adopts the answer edits that notice rather than leaving it behind). Does nothing
   * once the request has ended.
   */
  amendDelivery?(requestId: string, delivery: DeliveryTicket): Promise<void>;
  close(): Promise<void>;
}
