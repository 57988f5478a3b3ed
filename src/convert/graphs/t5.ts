/**
 * FlanT5 graphs: the encoder over [query embeddings; prompt embeddings], the cross-attention keys/values
 * (computed once per request), and one decoder step with a self-attention KV cache.
 *
 * T5 specifics kept as HF computes them: RMS norm without bias, no 1/sqrt(d_kv) score scaling, relative position
 * bias only from block 0 of each stack (bidirectional in the encoder, causal in the decoder) and reused by every
 * block, additive masks with float32 min, gated-GELU (tanh) feed-forward, and the d_model^-0.5 rescale before
 * lm_head only when embeddings are tied.
 */
import { type Blip2Config, type T5Config, t5Config } from '../../model/config.js';
import { CROSS_KV_IO, DECODER_IO, ENCODER_IO } from '../../model/graph-io.js';
import { f32ToF16Bits } from '../../util/half-float.js';
import {
  additiveMask,
  FLOAT32_MIN,
  fusedLinear,
  gelu,
  geluTanh,
  type LayerContext,
  linear,
  linearFromData,
  mergeHeads,
  rmsNorm,
  scaledDotAttention,
  splitHeads,
} from '../layers.js';
import { TensorDataType } from '../onnx/graph-builder.js';
import { relativePositionTable } from './relative-position.js';

const LM = 'language_model';

function inner(t: T5Config): number {
  return t.numHeads * t.dKv;
}

/** Token embedding lookup with the shared table (fp16 rows cast back to fp32 when the format says so). */
async function embed(ctx: LayerContext, path: string, ids: string, t: T5Config): Promise<string> {
  const name = `${LM}.shared.weight`;
  const dims = [t.vocabSize, t.dModel];
  const data = await ctx.weights.read(name, dims);
  if (ctx.quant.embeddings === 'fp16') {
    const table = ctx.b.float16Weight(name, f32ToF16Bits(data), dims);
    const rows = ctx.b.op(`${path}/Gather`, 'Gather', [table, ids], { axis: 0 });
    return ctx.b.op(`${path}/Cast`, 'Cast', [rows], { to: TensorDataType.FLOAT });
  }
  const table = ctx.b.weight(name, data, dims);
  return ctx.b.op(`${path}/Gather`, 'Gather', [table, ids], { axis: 0 });
}

/**
 * Position bias [1, H, Tq, Tk] for query positions `qpos` and key positions `kpos` (1-D int64), from the
 * relative_attention_bias of block 0.
 */
async function positionBias(
  ctx: LayerContext,
  path: string,
  stack: 'encoder' | 'decoder',
  qpos: string,
  kpos: string,
  t: T5Config,
): Promise<{ rel: string; bias: string }> {
  const { b } = ctx;
  const M = t.relativeAttentionMaxDistance;
  const table = relativePositionTable(stack === 'encoder', t.relativeAttentionNumBuckets, M);
  const tableName = b.weight(
    `/${stack}/relative_position_bucket_table`,
    BigInt64Array.from(table.map(BigInt)),
    [table.length],
    false,
  );
  const kRow = b.op(`${path}/key_positions/Unsqueeze`, 'Unsqueeze', [kpos, b.int64([0])]);
  const qCol = b.op(`${path}/query_positions/Unsqueeze`, 'Unsqueeze', [qpos, b.int64([1])]);
  const rel = b.op(`${path}/relative_position/Sub`, 'Sub', [kRow, qCol]);
  const clipped = b.op(`${path}/relative_position/Clip`, 'Clip', [rel, b.int64([-M], []), b.int64([M], [])]);
  const index = b.op(`${path}/relative_position/Offset`, 'Add', [clipped, b.int64([M], [])]);
  const bucket = b.op(`${path}/bucket/Gather`, 'Gather', [tableName, index], { axis: 0 });
  const weightName = `${LM}.${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`;
  const w = b.weight(
    weightName,
    await ctx.weights.read(weightName, [t.relativeAttentionNumBuckets, t.numHeads]),
    [t.relativeAttentionNumBuckets, t.numHeads],
  );
  const values = b.op(`${path}/bias/Gather`, 'Gather', [w, bucket], { axis: 0 });
  const heads = b.op(`${path}/bias/Transpose`, 'Transpose', [values], { perm: [2, 0, 1] });
  return { rel, bias: b.op(`${path}/bias/Unsqueeze`, 'Unsqueeze', [heads, b.int64([0])]) };
}

/** 1-D int64 positions [start, end). */
function range(ctx: LayerContext, path: string, start: string, end: string): string {
  return ctx.b.op(`${path}/Range`, 'Range', [start, end, ctx.b.int64([1], [])]);
}

/** A dim of a tensor as an int64 scalar. */
function dimScalar(ctx: LayerContext, path: string, x: string, axis: number): string {
  const s = ctx.b.op(`${path}/Shape`, 'Shape', [x], { start: axis, end: axis + 1 });
  return ctx.b.op(`${path}/Squeeze`, 'Squeeze', [s, ctx.b.int64([0])]);
}

async function selfAttention(
  ctx: LayerContext,
  path: string,
  prefix: string,
  x: string,
  bias: string,
  t: T5Config,
  past?: { key: string; value: string },
): Promise<{ out: string; key: string; value: string }> {
  const { b } = ctx;
  const I = inner(t);
  const [q, k, v] = await fusedLinear(
    ctx,
    `${path}/qkv`,
    x,
    [`${prefix}.q`, `${prefix}.k`, `${prefix}.v`],
    I,
    t.dModel,
  );
  let key = splitHeads(b, `${path}/k`, k!, t.numHeads, t.dKv);
  let value = splitHeads(b, `${path}/v`, v!, t.numHeads, t.dKv);
  if (past) {
    key = b.op(`${path}/k/ConcatPast`, 'Concat', [past.key, key], { axis: 2 });
    value = b.op(`${path}/v/ConcatPast`, 'Concat', [past.value, value], { axis: 2 });
  }
  const kT = b.op(`${path}/k/TransposeForScores`, 'Transpose', [key], { perm: [0, 1, 3, 2] });
  const attn = scaledDotAttention(
    b,
    path,
    splitHeads(b, `${path}/q`, q!, t.numHeads, t.dKv),
    kT,
    value,
    bias,
  );
  const merged = mergeHeads(b, `${path}/merge`, attn, I);
  const out = await linear(ctx, `${path}/o`, merged, `${prefix}.o`, t.dModel, I);
  return { out, key, value };
}

async function feedForward(
  ctx: LayerContext,
  path: string,
  prefix: string,
  x: string,
  t: T5Config,
): Promise<string> {
  const { b } = ctx;
  const act = (p: string, y: string) =>
    t.activation === 'relu'
      ? b.op(`${p}/Relu`, 'Relu', [y])
      : t.activation === 'gelu_new'
        ? geluTanh(b, p, y)
        : gelu(b, p, y);
  let hidden: string;
  if (t.gatedFfn) {
    const [g, l] = await fusedLinear(
      ctx,
      `${path}/wi`,
      x,
      [`${prefix}.wi_0`, `${prefix}.wi_1`],
      t.dFf,
      t.dModel,
    );
    hidden = b.op(`${path}/gate/Mul`, 'Mul', [act(`${path}/act`, g!), l!]);
  } else {
    hidden = act(`${path}/act`, await linear(ctx, `${path}/wi`, x, `${prefix}.wi`, t.dFf, t.dModel));
  }
  return linear(ctx, `${path}/wo`, hidden, `${prefix}.wo`, t.dModel, t.dFf);
}

/** Sub-layer `layer.{n}` of a block, T5's pre-norm residual: `h + body(rms_norm(h))`. */
async function subLayer(
  ctx: LayerContext,
  t: T5Config,
  block: { path: string; prefix: string },
  n: number,
  h: string,
  body: (normed: string, path: string, prefix: string) => Promise<string>,
): Promise<string> {
  const path = `${block.path}/layer.${n}`;
  const prefix = `${block.prefix}.layer.${n}`;
  const normed = await rmsNorm(
    ctx,
    `${path}/layer_norm`,
    h,
    `${prefix}.layer_norm.weight`,
    t.dModel,
    t.layerNormEps,
  );
  return ctx.b.op(`${path}/residual`, 'Add', [h, await body(normed, path, prefix)]);
}

function finalNorm(ctx: LayerContext, stack: 'encoder' | 'decoder', h: string, t: T5Config): Promise<string> {
  return rmsNorm(
    ctx,
    `/${stack}/final_layer_norm`,
    h,
    `${LM}.${stack}.final_layer_norm.weight`,
    t.dModel,
    t.layerNormEps,
  );
}

/** Decoder cross-attention over precomputed keys/values; no position bias, only the encoder mask. */
async function crossAttention(
  ctx: LayerContext,
  path: string,
  prefix: string,
  x: string,
  cross: { key: string; value: string },
  mask: string,
  t: T5Config,
): Promise<string> {
  const { b } = ctx;
  const I = inner(t);
  const q = await linear(ctx, `${path}/q`, x, `${prefix}.q`, I, t.dModel);
  const kT = b.op(`${path}/k/TransposeForScores`, 'Transpose', [cross.key], { perm: [0, 1, 3, 2] });
  const attn = scaledDotAttention(
    b,
    path,
    splitHeads(b, `${path}/q`, q, t.numHeads, t.dKv),
    kT,
    cross.value,
    mask,
  );
  return linear(ctx, `${path}/o`, mergeHeads(b, `${path}/merge`, attn, I), `${prefix}.o`, t.dModel, I);
}

export async function buildT5EncoderGraph(ctx: LayerContext, config: Blip2Config): Promise<void> {
  const { b } = ctx;
  const t = t5Config(config);
  const query = b.signatureInput(ENCODER_IO.queryEmbeds);
  const ids = b.signatureInput(ENCODER_IO.inputIds);
  const mask = b.signatureInput(ENCODER_IO.attentionMask);

  const tokens = await embed(ctx, '/encoder/embed_tokens', ids, t);
  let h = b.op('/encoder/inputs_embeds/Concat', 'Concat', [query, tokens], { axis: 1 });

  const length = dimScalar(ctx, '/encoder/length', mask, 1);
  const pos = range(ctx, '/encoder/positions', b.int64([0], []), length);
  const { bias: posBias } = await positionBias(ctx, '/encoder/position_bias', 'encoder', pos, pos, t);
  const bias = b.op('/encoder/attention_bias/Add', 'Add', [
    posBias,
    additiveMask(b, '/encoder/attention_mask', mask),
  ]);

  for (let i = 0; i < t.numLayers; i++) {
    const block = { path: `/encoder/block.${i}`, prefix: `${LM}.encoder.block.${i}` };
    h = await subLayer(ctx, t, block, 0, h, async (x, path, prefix) => {
      return (await selfAttention(ctx, `${path}/SelfAttention`, `${prefix}.SelfAttention`, x, bias, t)).out;
    });
    h = await subLayer(ctx, t, block, 1, h, (x, path, prefix) =>
      feedForward(ctx, `${path}/DenseReluDense`, `${prefix}.DenseReluDense`, x, t),
    );
  }
  const out = await finalNorm(ctx, 'encoder', h, t);
  b.signatureOutput(ENCODER_IO.hiddenStates, out);
}

export async function buildT5CrossKvGraph(ctx: LayerContext, config: Blip2Config): Promise<void> {
  const { b } = ctx;
  const t = t5Config(config);
  const I = inner(t);
  const enc = b.signatureInput(CROSS_KV_IO.hiddenStates);
  for (let i = 0; i < t.numDecoderLayers; i++) {
    const prefix = `${LM}.decoder.block.${i}.layer.1.EncDecAttention`;
    const path = `/decoder/block.${i}/layer.1/EncDecAttention`;
    const k = await linear(ctx, `${path}/k`, enc, `${prefix}.k`, I, t.dModel);
    const v = await linear(ctx, `${path}/v`, enc, `${prefix}.v`, I, t.dModel);
    b.signatureOutput(CROSS_KV_IO.key(i), splitHeads(b, `${path}/k`, k, t.numHeads, t.dKv));
    b.signatureOutput(CROSS_KV_IO.value(i), splitHeads(b, `${path}/v`, v, t.numHeads, t.dKv));
  }
}

export async function buildT5DecoderGraph(ctx: LayerContext, config: Blip2Config): Promise<void> {
  const { b } = ctx;
  const t = t5Config(config);
  const ids = b.signatureInput(DECODER_IO.inputIds);
  const encMask = b.signatureInput(DECODER_IO.encoderAttentionMask);
  const decMask = b.signatureInput(DECODER_IO.decoderAttentionMask);
  const past: { key: string; value: string }[] = [];
  const cross: { key: string; value: string }[] = [];
  for (let i = 0; i < t.numDecoderLayers; i++) {
    past.push({
      key: b.signatureInput(DECODER_IO.pastKey(i)),
      value: b.signatureInput(DECODER_IO.pastValue(i)),
    });
  }
  for (let i = 0; i < t.numDecoderLayers; i++) {
    cross.push({
      key: b.signatureInput(DECODER_IO.crossKey(i)),
      value: b.signatureInput(DECODER_IO.crossValue(i)),
    });
  }

  let h = await embed(ctx, '/decoder/embed_tokens', ids, t);

  // Query positions continue after the cached ones; keys cover cache + new tokens.
  const pastLen = dimScalar(ctx, '/decoder/past_length', past[0]!.key, 2);
  const newLen = dimScalar(ctx, '/decoder/new_length', ids, 1);
  const total = b.op('/decoder/total_length/Add', 'Add', [pastLen, newLen]);
  const qpos = range(ctx, '/decoder/query_positions', pastLen, total);
  const kpos = range(ctx, '/decoder/key_positions', b.int64([0], []), total);
  const { rel, bias: posBias } = await positionBias(ctx, '/decoder/position_bias', 'decoder', qpos, kpos, t);
  const future = b.op('/decoder/causal_mask/Greater', 'Greater', [rel, b.int64([0], [])]);
  const causal = b.op('/decoder/causal_mask/Where', 'Where', [future, b.float([FLOAT32_MIN]), b.float([0])]);
  const causalBias = b.op('/decoder/self_attention_bias/Add', 'Add', [posBias, causal]);
  // Per-row padding of the self-attention cache (requests of different lengths in one batch): [B, 1, 1, P+T].
  const selfBias = b.op('/decoder/self_attention_bias/AddMask', 'Add', [
    causalBias,
    additiveMask(b, '/decoder/decoder_attention_mask', decMask),
  ]);
  const crossBias = additiveMask(b, '/decoder/encoder_attention_mask', encMask);

  for (let i = 0; i < t.numDecoderLayers; i++) {
    const block = { path: `/decoder/block.${i}`, prefix: `${LM}.decoder.block.${i}` };
    h = await subLayer(ctx, t, block, 0, h, async (x, path, prefix) => {
      const sa = await selfAttention(
        ctx,
        `${path}/SelfAttention`,
        `${prefix}.SelfAttention`,
        x,
        selfBias,
        t,
        past[i],
      );
      b.signatureOutput(DECODER_IO.presentKey(i), sa.key);
      b.signatureOutput(DECODER_IO.presentValue(i), sa.value);
      return sa.out;
    });
    h = await subLayer(ctx, t, block, 1, h, (x, path, prefix) =>
      crossAttention(ctx, `${path}/EncDecAttention`, `${prefix}.EncDecAttention`, x, cross[i]!, crossBias, t),
    );
    h = await subLayer(ctx, t, block, 2, h, (x, path, prefix) =>
      feedForward(ctx, `${path}/DenseReluDense`, `${prefix}.DenseReluDense`, x, t),
    );
  }
  let out = await finalNorm(ctx, 'decoder', h, t);
  let logits: string;
  if (t.tieWordEmbeddings) {
    out = b.op('/decoder/tied_rescale/Mul', 'Mul', [out, b.float([t.dModel ** -0.5])]);
    const shared = await ctx.weights.read(`${LM}.shared.weight`, [t.vocabSize, t.dModel]);
    logits = linearFromData(ctx, '/lm_head', out, {
      weight: shared,
      n: t.vocabSize,
      k: t.dModel,
      names: [`${LM}.shared.weight`],
    });
  } else {
    logits = await linear(ctx, '/lm_head', out, `${LM}.lm_head`, t.vocabSize, t.dModel);
  }
  b.signatureOutput(DECODER_IO.logits, logits);
}
