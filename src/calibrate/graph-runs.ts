/**
 * Runs a model dir's graphs one at a time (one session open at once, so an fp32 reference of a full-size model
 * fits in memory) over the calibration samples, in the engine's own feeds: pixels → image embeddings → query
 * embeddings → encoder → cross K/V → decoder. The same runs serve the fp32 reference (with taps: every MatMul's
 * input comes back as an extra output) and the converted model it is compared with.
 */
import { join } from 'node:path';
import { floatTensor, int64Tensor } from '../engine/model.js';
import { createSession, type ort } from '../engine/ort.js';
import { type Blip2Config, t5Config } from '../model/config.js';
import {
  CROSS_KV_IO,
  DECODER_IO,
  ENCODER_IO,
  GRAPH_FILES,
  type GraphName,
  OPT_IO,
  QFORMER_IO,
  VISION_IO,
} from '../model/graph-io.js';

export type Feeds = Record<string, ort.Tensor>;
export type Outputs = Record<string, ort.Tensor>;

const TAP_PREFIX = 'calib:';

/** A MatMul's input rows gathered over runs: [rows, k] once joined. */
export class TapStore {
  private readonly chunks = new Map<string, Float32Array[]>();

  add(outputs: Outputs): void {
    for (const [name, t] of Object.entries(outputs)) {
      if (!name.startsWith(TAP_PREFIX)) continue;
      const node = name.slice(TAP_PREFIX.length);
      const list = this.chunks.get(node) ?? [];
      list.push(t.data as Float32Array);
      this.chunks.set(node, list);
    }
  }

  /** The input a node saw, one chunk per run (one picture, one prompt), as the kernels will see it. */
  runs(node: string): Float32Array[] | undefined {
    return this.chunks.get(node);
  }

  clear(): void {
    this.chunks.clear();
  }

  /** How many chunks each node has now, to drop later additions with `rollback`. */
  mark(): Map<string, number> {
    return new Map([...this.chunks].map(([k, v]) => [k, v.length]));
  }

  rollback(mark: Map<string, number>): void {
    for (const [node, list] of this.chunks) list.length = mark.get(node) ?? 0;
  }
}

/** Drops tap outputs, keeping the graph's own. */
function ownOutputs(outputs: Outputs): Outputs {
  const own: Outputs = {};
  for (const [k, v] of Object.entries(outputs)) if (!k.startsWith(TAP_PREFIX)) own[k] = v;
  return own;
}

/** One open graph at a time. */
export async function withGraph<T>(
  dir: string,
  graph: GraphName,
  fn: (run: (feeds: Feeds) => Promise<Outputs>) => Promise<T>,
  taps?: TapStore,
): Promise<T> {
  const session = await createSession(join(dir, GRAPH_FILES[graph]), {
    graphOptimizationLevel: 'all',
    enableCpuMemArena: false,
  });
  try {
    return await fn(async (feeds) => {
      const out = (await session.run(feeds)) as Outputs;
      taps?.add(out);
      return ownOutputs(out);
    });
  } finally {
    await session.release();
  }
}

/** One calibration sample: an image (index) and prompt ids. */
export interface SampleInput {
  image: number;
  inputIds: number[];
}

/** Every graph's feeds and outputs for all samples, as one model computed them. */
export interface ModelRun {
  vision: { feeds: Feeds; outputs: Outputs }[];
  qformer: { feeds: Feeds; outputs: Outputs }[];
  encoder: { feeds: Feeds; outputs: Outputs }[];
  crossKv: { feeds: Feeds; outputs: Outputs }[];
  /** Teacher-forced over [start, ...ids]: logits at every position. */
  decoder: { feeds: Feeds; outputs: Outputs }[];
  /** OPT: teacher-forced prefill over [query; prompt, ...ids]: logits for every new token. */
  opt: { feeds: Feeds; outputs: Outputs }[];
  /** Greedy ids per sample (EOS ignored). */
  ids: number[][];
}

export interface RunOptions {
  config: Blip2Config;
  pixels: { data: Float32Array; dims: number[] }[];
  samples: SampleInput[];
  newTokens: number;
  /** Feed each graph these inputs instead of this model's own upstream outputs (per-graph agreement). */
  inputsFrom?: ModelRun;
  /** Teacher-force the decoder on these ids instead of its own greedy ones. */
  forceIds?: number[][];
  /** Gathers MatMul inputs per graph; called after each graph is done with them. */
  onGraphTaps?: (graph: GraphName, taps: TapStore) => Promise<void>;
}

/** No past: every run here starts from the first position. */
function emptyPast(config: Blip2Config, feeds: Feeds): void {
  const [layers, heads, headDim, key, value] =
    config.languageModel === 'opt'
      ? [config.text.numLayers, config.text.numHeads, config.text.headDim, OPT_IO.pastKey, OPT_IO.pastValue]
      : [
          config.text.numDecoderLayers,
          config.text.numHeads,
          config.text.dKv,
          DECODER_IO.pastKey,
          DECODER_IO.pastValue,
        ];
  for (let i = 0; i < layers; i++) {
    feeds[key(i)] = floatTensor({ data: new Float32Array(0), dims: [1, heads, 0, headDim] });
    feeds[value(i)] = floatTensor({ data: new Float32Array(0), dims: [1, heads, 0, headDim] });
  }
}

function argmaxLast(logits: ort.Tensor): number {
  const [, T, V] = logits.dims as [number, number, number];
  const data = logits.data as Float32Array;
  const base = (T - 1) * V;
  let best = 0;
  for (let v = 1; v < V; v++) if (data[base + v]! > data[base + best]!) best = v;
  return best;
}

/**
 * Runs the model's graphs over every sample, graph by graph. The decoder decodes greedily by re-running the
 * whole prefix each step (no KV cache: a handful of tokens, and the same graph the engine runs with P = 0),
 * then runs once teacher-forced over the full sequence so every position's logits and MatMul inputs are seen.
 */
export async function runModel(dir: string, options: RunOptions): Promise<ModelRun> {
  const { config, samples } = options;
  const src = options.inputsFrom;
  const taps = options.onGraphTaps ? new TapStore() : undefined;
  const finishGraph = async (g: GraphName) => {
    if (taps && options.onGraphTaps) await options.onGraphTaps(g, taps);
    taps?.clear();
  };
  const run: ModelRun = { vision: [], qformer: [], encoder: [], crossKv: [], decoder: [], opt: [], ids: [] };

  await withGraph(
    dir,
    'vision',
    async (exec) => {
      for (const p of options.pixels) {
        const feeds = { [VISION_IO.pixelValues]: floatTensor(p) };
        run.vision.push({ feeds, outputs: await exec(feeds) });
      }
    },
    taps,
  );
  await finishGraph('vision');

  await withGraph(
    dir,
    'qformer',
    async (exec) => {
      for (let i = 0; i < options.pixels.length; i++) {
        const embeds = (src ?? run).vision[i]!.outputs[VISION_IO.imageEmbeds]!;
        const feeds = { [QFORMER_IO.imageEmbeds]: embeds };
        run.qformer.push({ feeds, outputs: await exec(feeds) });
      }
    },
    taps,
  );
  await finishGraph('qformer');

  if (config.languageModel === 'opt') {
    await withGraph(dir, 'opt', (exec) => runOpt(exec, run, options, taps), taps);
    await finishGraph('opt');
    return run;
  }
  const t = t5Config(config);

  await withGraph(
    dir,
    'encoder',
    async (exec) => {
      for (const s of samples) {
        const query = (src ?? run).qformer[s.image]!.outputs[QFORMER_IO.queryEmbeds]!;
        const total = query.dims[1]! + s.inputIds.length;
        const feeds = {
          [ENCODER_IO.queryEmbeds]: query,
          [ENCODER_IO.inputIds]: int64Tensor(s.inputIds, [1, s.inputIds.length]),
          [ENCODER_IO.attentionMask]: int64Tensor(new Array<number>(total).fill(1), [1, total]),
        };
        run.encoder.push({ feeds, outputs: await exec(feeds) });
      }
    },
    taps,
  );
  await finishGraph('encoder');

  await withGraph(
    dir,
    'crossKv',
    async (exec) => {
      for (let i = 0; i < samples.length; i++) {
        const hidden = (src ?? run).encoder[i]!.outputs[ENCODER_IO.hiddenStates]!;
        const feeds = { [CROSS_KV_IO.hiddenStates]: hidden };
        run.crossKv.push({ feeds, outputs: await exec(feeds) });
      }
    },
    taps,
  );
  await finishGraph('crossKv');

  await withGraph(
    dir,
    'decoder',
    async (exec) => {
      for (let i = 0; i < samples.length; i++) {
        const cross = (src ?? run).crossKv[i]!.outputs;
        const encMask = (src ?? run).encoder[i]!.feeds[ENCODER_IO.attentionMask]!;
        const base: Feeds = { [DECODER_IO.encoderAttentionMask]: encMask };
        emptyPast(config, base);
        for (let l = 0; l < t.numDecoderLayers; l++) {
          base[DECODER_IO.crossKey(l)] = cross[CROSS_KV_IO.key(l)]!;
          base[DECODER_IO.crossValue(l)] = cross[CROSS_KV_IO.value(l)]!;
        }
        const seq = [t.decoderStartTokenId];
        const step = (ids: number[]) => ({
          ...base,
          [DECODER_IO.inputIds]: int64Tensor(ids, [1, ids.length]),
          [DECODER_IO.decoderAttentionMask]: int64Tensor(new Array<number>(ids.length).fill(1), [
            1,
            ids.length,
          ]),
        });
        // The greedy prefix runs repeat rows the teacher-forced run below sees once: their taps are dropped.
        const mark = taps?.mark();
        const ids: number[] = [];
        for (let n = 0; n < options.newTokens; n++) {
          const out = await exec(step(seq));
          const next = argmaxLast(out[DECODER_IO.logits]!);
          ids.push(next);
          seq.push(next);
        }
        if (mark) taps?.rollback(mark);
        run.ids.push(ids);
        const forced = options.forceIds?.[i] ?? ids;
        const feeds = step([t.decoderStartTokenId, ...forced.slice(0, options.newTokens - 1)]);
        run.decoder.push({ feeds, outputs: await exec(feeds) });
      }
    },
    taps,
  );
  await finishGraph('decoder');
  return run;
}

/**
 * OPT: greedy by re-running the prefill over the growing sequence (no cache, logits for the last position),
 * then one teacher-forced prefill whose logits cover every new token.
 */
async function runOpt(
  exec: (feeds: Feeds) => Promise<Outputs>,
  run: ModelRun,
  options: RunOptions,
  taps: TapStore | undefined,
): Promise<void> {
  const { config, samples } = options;
  const src = options.inputsFrom ?? run;
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    const query = src.qformer[s.image]!.outputs[QFORMER_IO.queryEmbeds]!;
    const prefill = (ids: number[], numLogits: number): Feeds => {
      const total = query.dims[1]! + ids.length;
      const feeds: Feeds = {
        [OPT_IO.queryEmbeds]: query,
        [OPT_IO.inputIds]: int64Tensor(ids, [1, ids.length]),
        [OPT_IO.attentionMask]: int64Tensor(new Array<number>(total).fill(1), [1, total]),
        [OPT_IO.numLogits]: int64Tensor([numLogits], [1]),
      };
      emptyPast(config, feeds);
      return feeds;
    };
    const mark = taps?.mark();
    const seq = [...s.inputIds];
    const ids: number[] = [];
    for (let n = 0; n < options.newTokens; n++) {
      const next = argmaxLast((await exec(prefill(seq, 1)))[OPT_IO.logits]!);
      ids.push(next);
      seq.push(next);
    }
    if (mark) taps?.rollback(mark);
    run.ids.push(ids);
    const forced = options.forceIds?.[i] ?? ids;
    const feeds = prefill([...s.inputIds, ...forced.slice(0, options.newTokens - 1)], options.newTokens);
    run.opt.push({ feeds, outputs: await exec(feeds) });
  }
}
