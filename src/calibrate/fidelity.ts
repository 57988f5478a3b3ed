/**
 * How closely a calibrated model follows its fp32 reference, measured right after conversion:
 * - per graph, on identical inputs (each graph fed the reference's own upstream outputs): cosine, max error;
 * - end to end on the calibration prompts: greedy ids, and the top-5 overlap of each step's logits when both
 *   models are teacher-forced on the reference's ids.
 * Random weights amplify any perturbation through a deep stack, so end-to-end agreement is a figure to report
 * for real weights, not the rule that picks kernels (that is per MatMul, choose-kernel.ts).
 */
import type { ort } from '../engine/ort.js';
import type { Blip2Config } from '../model/config.js';
import {
  DECODER_IO,
  ENCODER_IO,
  type GraphName,
  type ModelManifest,
  OPT_IO,
  QFORMER_IO,
  VISION_IO,
} from '../model/graph-io.js';
import {
  type FidelityReport,
  FP32_GRAPHS,
  type OutlierSummary,
  type OutputAgreement,
} from '../model/precision.js';
import { type ModelRun, runModel, type SampleInput } from './graph-runs.js';

/** Per-graph agreement below this cosine (identical inputs) is a missed bound, reported loudly. */
export const GRAPH_COSINE_BOUND = 0.99;

export interface FidelityInputs {
  config: Blip2Config;
  pixels: { data: Float32Array; dims: number[] }[];
  samples: SampleInput[];
  newTokens: number;
  calibration: FidelityReport['calibration'];
}

function agreement(output: string, got: Float32Array[], want: Float32Array[]): OutputAgreement {
  let dot = 0;
  let gg = 0;
  let ww = 0;
  let diff2 = 0;
  let maxAbsError = 0;
  for (let s = 0; s < want.length; s++) {
    const a = got[s]!;
    const b = want[s]!;
    for (let i = 0; i < b.length; i++) {
      dot += a[i]! * b[i]!;
      gg += a[i]! * a[i]!;
      ww += b[i]! * b[i]!;
      const d = a[i]! - b[i]!;
      diff2 += d * d;
      maxAbsError = Math.max(maxAbsError, Math.abs(d));
    }
  }
  return {
    output,
    cosine: gg === 0 || ww === 0 ? (gg === ww ? 1 : 0) : dot / Math.sqrt(gg * ww),
    maxAbsError,
    relativeError: ww === 0 ? 0 : Math.sqrt(diff2 / ww),
  };
}

type Stage = keyof Omit<ModelRun, 'ids'>;

/** The outputs compared per graph. */
function graphOutputs(graph: GraphName): { stage: Stage; output: string }[] {
  switch (graph) {
    case 'vision':
      return [{ stage: 'vision', output: VISION_IO.imageEmbeds }];
    case 'qformer':
      return [{ stage: 'qformer', output: QFORMER_IO.queryEmbeds }];
    case 'encoder':
      return [{ stage: 'encoder', output: ENCODER_IO.hiddenStates }];
    case 'crossKv':
      return [{ stage: 'crossKv', output: '*' }];
    case 'opt':
      return [{ stage: 'opt', output: OPT_IO.logits }];
    default:
      return [{ stage: 'decoder', output: DECODER_IO.logits }];
  }
}

function stageData(run: ModelRun, stage: Stage, output: string): Float32Array[] {
  return run[stage].map(({ outputs }) => {
    if (output !== '*') return outputs[output]!.data as Float32Array;
    const parts = Object.values(outputs).map((t: ort.Tensor) => t.data as Float32Array);
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  });
}

function topK(row: Float32Array, k: number): Set<number> {
  const idx: number[] = [];
  for (let v = 0; v < row.length; v++) {
    if (idx.length < k) {
      idx.push(v);
      idx.sort((a, b) => row[b]! - row[a]!);
    } else if (row[v]! > row[idx[k - 1]!]!) {
      idx[k - 1] = v;
      idx.sort((a, b) => row[b]! - row[a]!);
    }
  }
  return new Set(idx);
}

/** Mean |top5(a) ∩ top5(b)| / 5 over the positions of [1, T, V] logits. */
function top5Overlap(a: Float32Array, b: Float32Array, vocab: number): number {
  const T = b.length / vocab;
  let sum = 0;
  for (let t = 0; t < T; t++) {
    const ta = topK(a.subarray(t * vocab, (t + 1) * vocab), 5);
    const tb = topK(b.subarray(t * vocab, (t + 1) * vocab), 5);
    let common = 0;
    for (const v of ta) if (tb.has(v)) common++;
    sum += common / 5;
  }
  return T === 0 ? 1 : sum / T;
}

function outliers(manifest: ModelManifest, graph: GraphName): OutlierSummary[] {
  const seen = new Map<string, OutlierSummary>();
  for (const m of Object.values(manifest.precision?.matmuls ?? {})) {
    if (m.graph !== graph || !m.input || seen.has(m.node)) continue;
    const { maxAbs, medianAbs } = m.input;
    seen.set(m.node, { node: m.node, maxAbs, medianAbs, ratio: medianAbs > 0 ? maxAbs / medianAbs : 0 });
  }
  return [...seen.values()].sort((a, b) => b.ratio - a.ratio).slice(0, 3);
}

function fp32Fallbacks(manifest: ModelManifest, graph: GraphName): string[] {
  if (FP32_GRAPHS.has(graph)) return [];
  const nodes = new Set<string>();
  for (const m of Object.values(manifest.precision?.matmuls ?? {})) {
    if (m.graph === graph && m.kernel === 'fp32') nodes.add(m.node);
  }
  return [...nodes];
}

export async function compareWithReference(
  dir: string,
  manifest: ModelManifest,
  reference: ModelRun,
  inputs: FidelityInputs,
): Promise<FidelityReport> {
  const base = {
    config: inputs.config,
    pixels: inputs.pixels,
    samples: inputs.samples,
    newTokens: inputs.newTokens,
    forceIds: reference.ids,
  };
  // Each graph on the reference's own inputs, then the whole chain on its own.
  const perGraph = await runModel(dir, { ...base, inputsFrom: reference });
  const chain = await runModel(dir, base);

  const warnings: string[] = [];
  const graphs: FidelityReport['graphs'] = {};
  for (const graph of Object.keys(manifest.graphs) as GraphName[]) {
    const agreementRows = graphOutputs(graph).map(({ stage, output }) =>
      agreement(
        output === '*' ? 'cross K/V' : output,
        stageData(perGraph, stage, output),
        stageData(reference, stage, output),
      ),
    );
    for (const a of agreementRows) {
      if (a.cosine < GRAPH_COSINE_BOUND) {
        warnings.push(
          `${graph}: ${a.output} agrees with fp32 at cosine ${a.cosine.toFixed(4)} on identical inputs (bound ${GRAPH_COSINE_BOUND})`,
        );
      }
    }
    const fallbacks = fp32Fallbacks(manifest, graph);
    if (fallbacks.length > 0) {
      warnings.push(
        `${graph}: ${fallbacks.length} MatMul(s) missed every quantised kernel's bounds and run fp32 (${fallbacks.slice(0, 3).join(', ')}${fallbacks.length > 3 ? ', …' : ''})`,
      );
    }
    graphs[graph] = {
      kernels: manifest.graphs[graph]?.kernels ?? {},
      outliers: outliers(manifest, graph),
      fp32Fallbacks: fallbacks,
      agreement: agreementRows,
    };
  }

  const vocab = inputs.config.text.vocabSize;
  // The language model's teacher-forced logits: the T5 decoder's, or OPT's (same output name).
  const lm: Stage = inputs.config.languageModel === 'opt' ? 'opt' : 'decoder';
  const samples = inputs.samples.map((s, i) => {
    const want = reference[lm][i]!.outputs[DECODER_IO.logits]!.data as Float32Array;
    const got = chain[lm][i]!.outputs[DECODER_IO.logits]!.data as Float32Array;
    return {
      image: inputs.calibration.images[s.image] ?? String(s.image),
      prompt: inputs.calibration.prompts[i % inputs.calibration.prompts.length] ?? '',
      referenceIds: reference.ids[i]!,
      ids: chain.ids[i]!,
      top5Overlap: top5Overlap(got, want, vocab),
    };
  });
  const identicalGreedy = samples.filter((s) => s.ids.join(',') === s.referenceIds.join(',')).length;
  return {
    calibration: inputs.calibration,
    graphs,
    endToEnd: {
      identicalGreedy,
      prompts: samples.length,
      top5Overlap: samples.reduce((n, s) => n + s.top5Overlap, 0) / Math.max(1, samples.length),
      samples,
    },
    warnings,
  };
}
