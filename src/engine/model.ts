/**
 * The converted model's steps as small named methods over onnxruntime sessions: pixels → image embeddings →
 * query embeddings → the prompt (FlanT5: encoder states and cross K/V; OPT: the prefill with its KV cache) →
 * decoder steps. No queue, cache or prompt logic here.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserFacingError } from '../errors.js';
import {
  type Blip2Config,
  languageModelWidth,
  type OptConfig,
  resolveBlip2Config,
  t5Config,
} from '../model/config.js';
import {
  CROSS_KV_IO,
  DECODER_IO,
  ENCODER_IO,
  GRAPH_FILES,
  type GraphName,
  graphSignature,
  type LoadedGraphIO,
  MODEL_GRAPHS,
  type ModelManifest,
  OPT_IO,
  QFORMER_IO,
  signatureMismatches,
  VISION_IO,
} from '../model/graph-io.js';
import { loadManifest } from '../model/manifest.js';
import {
  type BatchGraph,
  type BatchMember,
  DecodeBatch,
  type LayoutEntry,
  type MergedStepInput,
} from './decode-batch.js';
import type { DecoderStepper } from './generation/generate.js';
import { createSession, ort } from './ort.js';

export interface FloatTensor {
  data: Float32Array;
  dims: number[];
}

export interface ModelLoadOptions {
  /** onnxruntime intra-op threads; default: every core. */
  threads?: number;
  /** Write onnxruntime profiles (one JSON per graph, named `<dir>/<graph>_*.json`), for `bench --profile`. */
  profileDir?: string;
  /** More onnxruntime session options per graph, over the defaults (the cold-start benchmark tries settings). */
  sessionOptions?: (graph: GraphName) => ort.InferenceSession.SessionOptions;
  /** Load this file instead of the manifest's graph (the cold-start benchmark's optimized-model cache). */
  graphFile?: (graph: GraphName, file: string) => string;
}

export class ModelLoadError extends UserFacingError {
  override name = 'ModelLoadError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('model_load', message, options);
  }
}

/** Names and element types of a session's inputs and outputs, as onnxruntime reports them. */
function describeSession(session: ort.InferenceSession): LoadedGraphIO {
  const types = (metadata: readonly ort.InferenceSession.ValueMetadata[] | undefined) =>
    new Map((metadata ?? []).flatMap((m) => (m.isTensor ? [[m.name, String(m.type)] as const] : [])));
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputTypes: types(session.inputMetadata),
    outputTypes: types(session.outputMetadata),
  };
}

/** Also used by calibration (src/calibrate), which feeds the same graphs. */
export function floatTensor(t: FloatTensor): ort.Tensor {
  return new ort.Tensor('float32', t.data, t.dims);
}

export function int64Tensor(values: readonly number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (v) => BigInt(v)),
    dims,
  );
}

function toFloat(value: ort.Tensor | undefined, name: string): FloatTensor {
  if (!value) throw new Error(`graph output ${name} missing`);
  return { data: value.data as Float32Array, dims: [...value.dims] };
}

/** FlanT5: cross-attention K/V of every decoder layer plus the encoder mask, computed once per request. */
export interface T5EncoderState {
  kind: 't5';
  hidden: FloatTensor;
  mask: number[];
  cross: ort.Tensor[];
}

/** OPT: the prefill's KV cache, its mask and the logits of its last position (the first generation step). */
export interface OptPrefillState {
  kind: 'opt';
  mask: number[];
  past: ort.Tensor[];
  logits: Float32Array;
}

/** What the prompt leaves for the decoding loop, per kind of language model. */
export type EncoderState = T5EncoderState | OptPrefillState;

/** The engine's one decode batch: `join` a request's encoder state, `leave()` the member when done. */
export interface ModelDecodeBatch {
  /** The batch itself (its `stats` and `graph.canMerge`). */
  readonly batch: DecodeBatch<T5Rows> | DecodeBatch<undefined>;
  join(state: EncoderState): BatchMember<unknown>;
}

/** Every output of one OPT prefill, for `inspect` and parity checks. */
export interface OptForward {
  inputsEmbeds: FloatTensor;
  hidden: FloatTensor;
  /** [1, numLogits, vocab] */
  logits: FloatTensor;
  past: ort.Tensor[];
}

export class Blip2Model {
  /** Session runs per graph since load; tests use them to prove the cache skips vision and Q-Former. */
  readonly runs: Record<GraphName, number> = {
    vision: 0,
    qformer: 0,
    encoder: 0,
    crossKv: 0,
    decoder: 0,
    opt: 0,
  };

  #lastRun: Promise<void> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly manifest: ModelManifest,
    readonly config: Blip2Config,
    private readonly sessions: Partial<Record<GraphName, ort.InferenceSession>>,
  ) {}

  static async load(dir: string, options: ModelLoadOptions = {}): Promise<Blip2Model> {
    const manifest = await loadManifest(dir);
    const config = resolveBlip2Config(manifest.source.config);
    if ((manifest.languageModel ?? 't5') !== config.languageModel) {
      throw new ModelLoadError(
        `${dir}: manifest.json says ${manifest.languageModel ?? 't5'} but its config is ${config.languageModel}; convert the model again`,
      );
    }
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      // Without the arena, freed activations go back to the system: 0.1–0.2 GB lower peak RSS at full size, and
      // no slower in the benchmark (docs/benchmarks.md).
      enableCpuMemArena: false,
      executionMode: 'sequential',
      ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
    };
    const sessions: Partial<Record<GraphName, ort.InferenceSession>> = {};
    for (const name of MODEL_GRAPHS[config.languageModel]) {
      const manifestFile = join(dir, manifest.graphs[name]?.file ?? GRAPH_FILES[name]);
      const file = options.graphFile?.(name, manifestFile) ?? manifestFile;
      const profiling = options.profileDir
        ? { enableProfiling: true, profileFilePrefix: join(options.profileDir, `${name}_`) }
        : {};
      try {
        sessions[name] = await createSession(file, {
          ...sessionOptions,
          ...profiling,
          ...options.sessionOptions?.(name),
        });
      } catch (e) {
        await Promise.allSettled(Object.values(sessions).map((s) => s.release()));
        throw new ModelLoadError(`cannot load ${file}: ${(e as Error).message}`);
      }
      // A graph from another converter version (or another tool) fails here with a clear line, not at the first
      // run with onnxruntime's "invalid input name".
      const problems = signatureMismatches(graphSignature(name, config), describeSession(sessions[name]));
      if (problems.length > 0) {
        await Promise.allSettled(Object.values(sessions).map((s) => s.release()));
        throw new ModelLoadError(
          `${file} does not have the inputs and outputs this blip2-bot expects (${problems.join('; ')}); it was ` +
            'probably converted by another version: convert the model again with `blip2-bot convert --force`',
        );
      }
    }
    return new Blip2Model(dir, manifest, config, sessions);
  }

  get modelId(): string {
    return this.manifest.modelId;
  }

  get demo(): boolean {
    return this.manifest.demo;
  }

  /** The model's preprocessor_config.json as converted (undefined: BLIP-2 defaults). */
  async preprocessorConfig(): Promise<unknown> {
    if (this.manifest.preprocessorConfig) return this.manifest.preprocessorConfig;
    try {
      return JSON.parse(await readFile(join(this.dir, 'preprocessor_config.json'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  private async run(
    name: GraphName,
    feeds: Record<string, ort.Tensor>,
  ): Promise<ort.InferenceSession.ReturnType> {
    const session = this.sessions[name];
    if (!session) throw new Error(`this ${this.config.languageModel} model has no ${name} graph`);
    this.runs[name]++;
    // One session run at a time, in call order: onnxruntime spreads each run over every core, and the engine's
    // requests in flight (an encoder here, a merged decode step there) take turns between runs.
    const result = this.#lastRun.then(() => session.run(feeds));
    this.#lastRun = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** pixel_values [1,3,H,W] → HF `vision_model(...).last_hidden_state`. */
  async visionEncode(pixels: FloatTensor): Promise<FloatTensor> {
    const out = await this.run('vision', { [VISION_IO.pixelValues]: floatTensor(pixels) });
    return toFloat(out[VISION_IO.imageEmbeds], VISION_IO.imageEmbeds);
  }

  /** image embeddings → Q-Former output and its projection into the language model's embedding space. */
  async queryEncode(
    imageEmbeds: FloatTensor,
  ): Promise<{ qformerOutput: FloatTensor; queryEmbeds: FloatTensor }> {
    const out = await this.run('qformer', { [QFORMER_IO.imageEmbeds]: floatTensor(imageEmbeds) });
    return {
      qformerOutput: toFloat(out[QFORMER_IO.qformerOutput], QFORMER_IO.qformerOutput),
      queryEmbeds: toFloat(out[QFORMER_IO.queryEmbeds], QFORMER_IO.queryEmbeds),
    };
  }

  /**
   * The prompt, once per request: FlanT5 runs its encoder over [query embeddings; prompt] and the decoder's cross
   * K/V; OPT runs its prefill over the same sequence and keeps the KV cache and the last position's logits.
   */
  async encode(queryEmbeds: FloatTensor | undefined, inputIds: readonly number[]): Promise<EncoderState> {
    if (this.config.languageModel === 'opt') {
      const query = queryEmbeds?.dims[1] ?? 0;
      const mask = new Array<number>(query + inputIds.length).fill(1);
      const out = await this.optForward(queryEmbeds, inputIds, 1);
      return { kind: 'opt', mask, past: out.past, logits: out.logits.data };
    }
    const d = languageModelWidth(this.config);
    const query = queryEmbeds ?? { data: new Float32Array(0), dims: [1, 0, d] };
    const total = (query.dims[1] ?? 0) + inputIds.length;
    const mask = new Array<number>(total).fill(1);
    const out = await this.run('encoder', {
      [ENCODER_IO.queryEmbeds]: floatTensor(query),
      [ENCODER_IO.inputIds]: int64Tensor(inputIds, [1, inputIds.length]),
      [ENCODER_IO.attentionMask]: int64Tensor(mask, [1, total]),
    });
    const hidden = toFloat(out[ENCODER_IO.hiddenStates], ENCODER_IO.hiddenStates);
    const kv = await this.run('crossKv', { [CROSS_KV_IO.hiddenStates]: floatTensor(hidden) });
    const cross: ort.Tensor[] = [];
    for (let i = 0; i < t5Config(this.config).numDecoderLayers; i++) {
      cross.push(kv[CROSS_KV_IO.key(i)]!, kv[CROSS_KV_IO.value(i)]!);
    }
    return { kind: 't5', hidden, mask, cross };
  }

  /** OPT over [query embeddings; embed(ids)] with no past (one row, no padding), logits for the last `numLogits`. */
  async optForward(
    queryEmbeds: FloatTensor | undefined,
    inputIds: readonly number[],
    numLogits: number,
  ): Promise<OptForward> {
    const t = this.optConfig();
    const query = queryEmbeds ?? { data: new Float32Array(0), dims: [1, 0, t.hiddenSize] };
    const total = (query.dims[1] ?? 0) + inputIds.length;
    const feeds: Record<string, ort.Tensor> = {
      [OPT_IO.queryEmbeds]: floatTensor(query),
      [OPT_IO.inputIds]: int64Tensor(inputIds, [1, inputIds.length]),
      [OPT_IO.attentionMask]: int64Tensor(new Array<number>(total).fill(1), [1, total]),
      [OPT_IO.numLogits]: int64Tensor([numLogits], [1]),
    };
    const empty = new ort.Tensor('float32', new Float32Array(0), [1, t.numHeads, 0, t.headDim]);
    for (let i = 0; i < t.numLayers; i++) {
      feeds[OPT_IO.pastKey(i)] = empty;
      feeds[OPT_IO.pastValue(i)] = empty;
    }
    const out = await this.run('opt', feeds);
    const past: ort.Tensor[] = [];
    for (let i = 0; i < t.numLayers; i++) past.push(out[OPT_IO.presentKey(i)]!, out[OPT_IO.presentValue(i)]!);
    return {
      inputsEmbeds: toFloat(out[OPT_IO.inputsEmbeds], OPT_IO.inputsEmbeds),
      hidden: toFloat(out[OPT_IO.hiddenStates], OPT_IO.hiddenStates),
      logits: toFloat(out[OPT_IO.logits], OPT_IO.logits),
      past,
    };
  }

  private optConfig(): OptConfig {
    if (this.config.languageModel !== 'opt') throw new Error('not an OPT model');
    return this.config.text;
  }

  /**
   * A decode batch over this model's decoder: requests that join it decode their steps together
   * (decode-batch.ts). The engine keeps one for all its requests.
   */
  createDecodeBatch(): ModelDecodeBatch {
    if (this.config.languageModel === 'opt') {
      const batch = new DecodeBatch(new OptBatchGraph(this));
      return {
        batch,
        join: (state) => {
          if (state.kind !== 'opt') throw new Error('an OPT model decodes OPT prefill states only');
          return batch.join({ data: undefined, past: state.past, firstLogits: state.logits });
        },
      };
    }
    const decoder = this.sessions.decoder;
    const canMerge = decoder?.inputNames.includes(DECODER_IO.decoderAttentionMask) ?? false;
    const batch = new DecodeBatch(new T5BatchGraph(this, canMerge));
    const t = t5Config(this.config);
    const empty = new ort.Tensor('float32', new Float32Array(0), [1, t.numHeads, 0, t.dKv]);
    const past = Array.from({ length: 2 * t.numDecoderLayers }, () => empty);
    return {
      batch,
      join: (state) => {
        if (state.kind !== 't5') throw new Error('a FlanT5 model decodes FlanT5 encoder states only');
        return batch.join({ data: { cross: state.cross, mask: state.mask }, past });
      },
    };
  }

  /** A decoder with its own KV cache for one request, in a batch of its own. */
  decoder(state: EncoderState): DecoderStepper {
    return this.createDecodeBatch().join(state);
  }

  /** @internal used by the OPT stepper */
  runOpt(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    return this.run('opt', feeds);
  }

  /** @internal used by the stepper */
  runDecoder(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    return this.run('decoder', feeds);
  }

  /** Flushes onnxruntime profiles (when loaded with `profileDir`). */
  endProfiling(): void {
    for (const s of Object.values(this.sessions)) s?.endProfiling();
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.sessions)) await s?.release();
  }
}

/** FlanT5, per request in a decode batch: its cross K/V ([1, heads, E, d_kv] per layer) and encoder mask. */
export interface T5Rows {
  cross: readonly ort.Tensor[];
  mask: readonly number[];
}

/**
 * FlanT5's decoder step over a merged batch. Cross K/V are shared by the rows of one request (one image, one
 * prompt), so they are tiled only when the layout changes; shorter prompts are right-padded and masked.
 */
class T5BatchGraph implements BatchGraph<T5Rows> {
  readonly vocabSize: number;
  private readonly layers: number;
  private cross: readonly ort.Tensor[] = [];
  private encoderMask: ort.Tensor | undefined;

  constructor(
    private readonly model: Blip2Model,
    readonly canMerge: boolean,
  ) {
    const t = t5Config(model.config);
    this.vocabSize = t.vocabSize;
    this.layers = t.numDecoderLayers;
  }

  async run(input: MergedStepInput<T5Rows>): Promise<{ logits: Float32Array; present: ort.Tensor[] }> {
    if (input.layoutChanged || !this.encoderMask) this.tile(input.layout);
    const feeds: Record<string, ort.Tensor> = {
      [DECODER_IO.inputIds]: int64Tensor(input.tokens, [input.tokens.length, 1]),
      [DECODER_IO.encoderAttentionMask]: this.encoderMask!,
    };
    if (this.canMerge) feeds[DECODER_IO.decoderAttentionMask] = input.pastMask;
    for (let i = 0; i < this.layers; i++) {
      feeds[DECODER_IO.pastKey(i)] = input.past[2 * i]!;
      feeds[DECODER_IO.pastValue(i)] = input.past[2 * i + 1]!;
      feeds[DECODER_IO.crossKey(i)] = this.cross[2 * i]!;
      feeds[DECODER_IO.crossValue(i)] = this.cross[2 * i + 1]!;
    }
    const out = await this.model.runDecoder(feeds);
    const present: ort.Tensor[] = [];
    for (let i = 0; i < this.layers; i++) {
      present.push(out[DECODER_IO.presentKey(i)]!, out[DECODER_IO.presentValue(i)]!);
    }
    return { logits: out[DECODER_IO.logits]!.data as Float32Array, present };
  }

  idle(): void {
    this.cross = [];
    this.encoderMask = undefined;
  }

  private tile(layout: readonly LayoutEntry<T5Rows>[]): void {
    const only = layout.length === 1 && layout[0]!.rows === 1 ? layout[0]!.member : undefined;
    const width = Math.max(...layout.map((e) => e.member.mask.length));
    const rows = layout.reduce((sum, e) => sum + e.rows, 0);
    const mask = new BigInt64Array(rows * width);
    let row = 0;
    for (const e of layout) {
      const values = BigInt64Array.from(e.member.mask, BigInt);
      for (let r = 0; r < e.rows; r++, row++) mask.set(values, row * width);
    }
    this.encoderMask = new ort.Tensor('int64', mask, [rows, width]);
    if (only) {
      this.cross = only.cross;
      return;
    }
    this.cross = layout[0]!.member.cross.map((first, t) => {
      const [, heads, , dKv] = first.dims as [number, number, number, number];
      const out = new Float32Array(rows * heads * width * dKv);
      let row = 0;
      for (const e of layout) {
        const src = e.member.cross[t]!.data as Float32Array;
        const length = e.member.mask.length;
        for (let r = 0; r < e.rows; r++, row++) {
          for (let h = 0; h < heads; h++) {
            out.set(src.subarray(h * length * dKv, (h + 1) * length * dKv), (row * heads + h) * width * dKv);
          }
        }
      }
      return new ort.Tensor('float32', out, [rows, heads, width, dKv]);
    });
  }
}

/**
 * OPT's cached step over a merged batch: one token per row, the mask over the left-padded cache; positions
 * follow from the mask inside the graph, as in HF.
 */
class OptBatchGraph implements BatchGraph<undefined> {
  readonly vocabSize: number;
  readonly canMerge = true;
  private readonly t: OptConfig;
  private readonly noQuery = new Map<number, ort.Tensor>();

  constructor(private readonly model: Blip2Model) {
    if (model.config.languageModel !== 'opt') throw new Error('not an OPT model');
    this.t = model.config.text;
    this.vocabSize = this.t.vocabSize;
  }

  private emptyQuery(rows: number): ort.Tensor {
    let t = this.noQuery.get(rows);
    if (!t) {
      t = new ort.Tensor('float32', new Float32Array(0), [rows, 0, this.t.hiddenSize]);
      this.noQuery.set(rows, t);
    }
    return t;
  }

  async run(input: MergedStepInput<undefined>): Promise<{ logits: Float32Array; present: ort.Tensor[] }> {
    const rows = input.tokens.length;
    const feeds: Record<string, ort.Tensor> = {
      [OPT_IO.queryEmbeds]: this.emptyQuery(rows),
      [OPT_IO.inputIds]: int64Tensor(input.tokens, [rows, 1]),
      [OPT_IO.attentionMask]: input.pastMask,
      [OPT_IO.numLogits]: int64Tensor([1], [1]),
    };
    for (let i = 0; i < this.t.numLayers; i++) {
      feeds[OPT_IO.pastKey(i)] = input.past[2 * i]!;
      feeds[OPT_IO.pastValue(i)] = input.past[2 * i + 1]!;
    }
    const out = await this.model.runOpt(feeds);
    const present: ort.Tensor[] = [];
    for (let i = 0; i < this.t.numLayers; i++) {
      present.push(out[OPT_IO.presentKey(i)]!, out[OPT_IO.presentValue(i)]!);
    }
    return { logits: out[OPT_IO.logits]!.data as Float32Array, present };
  }
}
