/**
 * How much work each stage is, from the model's config and weight formats: FLOPs of the compute-bound stages and
 * the weight bytes one decoder step streams.
 */
import type { Blip2Config } from '../src/model/config.js';
import { visionSequenceLength } from '../src/model/config.js';
import type { WeightFormat } from '../src/model/graph-io.js';

/** 2·rows·params of a stack of Linears, plus attention's two matmuls. */
export function visionFlops(c: Blip2Config): number {
  const v = c.vision;
  const S = visionSequenceLength(v);
  const perLayer = 4 * v.hiddenSize * v.hiddenSize + 2 * v.hiddenSize * v.intermediateSize;
  return v.numLayers * (2 * S * perLayer + 4 * S * S * v.hiddenSize);
}

/** Prompt work: the T5 encoder and cross K/V, or OPT's prefill (its lm_head runs for the last row only). */
export function encoderFlops(c: Blip2Config, tokens: number): number {
  if (c.languageModel === 'opt') {
    const o = c.text;
    const perLayer = 4 * o.hiddenSize * o.hiddenSize + 2 * o.hiddenSize * o.ffnDim;
    return (
      o.numLayers * (2 * tokens * perLayer + 4 * tokens * tokens * o.hiddenSize) +
      2 * o.vocabSize * o.hiddenSize
    );
  }
  const t = c.text;
  const inner = t.numHeads * t.dKv;
  const ffn = (t.gatedFfn ? 3 : 2) * t.dModel * t.dFf;
  const perLayer = 4 * t.dModel * inner + ffn;
  const crossKv = t.numDecoderLayers * 2 * t.dModel * inner;
  return t.numLayers * (2 * tokens * perLayer + 4 * tokens * tokens * inner) + 2 * tokens * crossKv;
}

/** Bytes per weight of a format, block scales included. */
export function bytesPerWeight(format: WeightFormat, blockSize: number): number {
  switch (format) {
    case 'fp32':
      return 4;
    case 'int8-dynamic':
      return 1;
    case 'int8':
      return 1 + 4 / blockSize;
    case 'int4':
      return 0.5 + 4 / blockSize;
  }
}

/** Weight bytes one decoder step reads: every decoder Linear and lm_head (the embedding gathers one row). */
export function decoderStepBytes(c: Blip2Config, format: WeightFormat, blockSize: number): number {
  if (c.languageModel === 'opt') {
    const o = c.text;
    const perLayer = 4 * o.hiddenSize * o.hiddenSize + 2 * o.hiddenSize * o.ffnDim;
    return (o.numLayers * perLayer + o.vocabSize * o.hiddenSize) * bytesPerWeight(format, blockSize);
  }
  const t = c.text;
  const inner = t.numHeads * t.dKv;
  const ffn = (t.gatedFfn ? 3 : 2) * t.dModel * t.dFf;
  const perLayer = 4 * t.dModel * inner + 2 * t.dModel * inner + ffn;
  return (t.numDecoderLayers * perLayer + t.vocabSize * t.dModel) * bytesPerWeight(format, blockSize);
}
