/**
 * The OPT language model (`OPTForCausalLM`) as BLIP-2 runs it, in one graph for the prefill and every cached
 * step: `[query_embeds ; embed(input_ids)]` plus learned positions, pre-LN decoder layers with a self-attention
 * KV cache, the final LayerNorm and the tied lm_head.
 *
 * OPT specifics kept as HF 4.40 computes them (`models/opt/modeling_opt.py`, shared/fixtures/NOTES-opt.md):
 * positions from the attention mask (`cumsum(mask) * mask - 1`, table row `pos + 2`, pads read row 1), causal
 * attention over the whole sequence including the query tokens, padded keys masked with float32 min, q scaled by
 * head_dim^-0.5 after its bias, ReLU feed-forward, biases everywhere, LayerNorm eps 1e-5, no embedding or logit
 * scale.
 */
import type { Blip2Config, OptConfig } from '../../model/config.js';
import { OPT_IO } from '../../model/graph-io.js';
import {
  FLOAT32_MIN,
  type LayerContext,
  layerNorm,
  linear,
  linearFromData,
  mergeHeads,
  scaledDotAttention,
  splitHeads,
} from '../layers.js';

const LM = 'language_model';
const DECODER = `${LM}.model.decoder`;
/** OPTLearnedPositionalEmbedding's offset: position p reads table row p + 2. */
const POSITION_OFFSET = 2;

function optConfig(config: Blip2Config): OptConfig {
  if (config.languageModel !== 'opt') throw new Error('the OPT graph needs a BLIP-2 OPT config');
  return config.text;
}

/** A dim of a tensor as a 1-element int64 tensor. */
function dim(ctx: LayerContext, path: string, x: string, axis: number): string {
  return ctx.b.op(`${path}/Shape`, 'Shape', [x], { start: axis, end: axis + 1 });
}

function scalar(ctx: LayerContext, path: string, x: string): string {
  return ctx.b.op(`${path}/Squeeze`, 'Squeeze', [x, ctx.b.int64([0])]);
}

/** `OPTAttention` with the cache: returns the output and the key/value over past + new positions. */
async function selfAttention(
  ctx: LayerContext,
  path: string,
  prefix: string,
  x: string,
  bias: string,
  past: { key: string; value: string },
  t: OptConfig,
): Promise<{ out: string; key: string; value: string }> {
  const { b } = ctx;
  const D = t.hiddenSize;
  const projected = await linear(ctx, `${path}/q_proj`, x, `${prefix}.q_proj`, D, D, { bias: true });
  // HF scales q after its bias: `q_proj(x) * head_dim ** -0.5`.
  const q = b.op(`${path}/q_proj/Scale`, 'Mul', [projected, b.float([t.headDim ** -0.5])]);
  const k = await linear(ctx, `${path}/k_proj`, x, `${prefix}.k_proj`, D, D, { bias: true });
  const v = await linear(ctx, `${path}/v_proj`, x, `${prefix}.v_proj`, D, D, { bias: true });
  const key = b.op(
    `${path}/k_proj/ConcatPast`,
    'Concat',
    [past.key, splitHeads(b, `${path}/k_proj`, k, t.numHeads, t.headDim)],
    { axis: 2 },
  );
  const value = b.op(
    `${path}/v_proj/ConcatPast`,
    'Concat',
    [past.value, splitHeads(b, `${path}/v_proj`, v, t.numHeads, t.headDim)],
    { axis: 2 },
  );
  const kT = b.op(`${path}/k_proj/TransposeForScores`, 'Transpose', [key], { perm: [0, 1, 3, 2] });
  const attn = scaledDotAttention(
    b,
    path,
    splitHeads(b, `${path}/q_proj`, q, t.numHeads, t.headDim),
    kT,
    value,
    bias,
  );
  const merged = mergeHeads(b, `${path}/merge`, attn, D);
  const out = await linear(ctx, `${path}/out_proj`, merged, `${prefix}.out_proj`, D, D, { bias: true });
  return { out, key, value };
}

/**
 * Positions of the new tokens and the additive attention bias [B, 1, T, P + T], both from the 2-D mask over
 * past + new positions, as `OPTLearnedPositionalEmbedding` and `_prepare_4d_causal_attention_mask` compute them.
 */
function positionsAndMask(
  ctx: LayerContext,
  mask: string,
  newTokens: string,
): { rows: string; bias: string } {
  const { b } = ctx;
  const total = dim(ctx, '/opt/total_length', mask, 1);
  const pastLen = b.op('/opt/past_length/Sub', 'Sub', [total, newTokens]);

  const cumsum = b.op('/opt/embed_positions/CumSum', 'CumSum', [mask, b.int64([1], [])]);
  const masked = b.op('/opt/embed_positions/Mul', 'Mul', [cumsum, mask]);
  const positions = b.op('/opt/embed_positions/Sub', 'Sub', [masked, b.int64([1], [])]);
  const newPositions = b.op('/opt/embed_positions/Slice', 'Slice', [positions, pastLen, total, b.int64([1])]);
  const rows = b.op('/opt/embed_positions/Offset', 'Add', [newPositions, b.int64([POSITION_OFFSET], [])]);

  // Query i (absolute position P + i) sees keys 0…P + i that the mask does not exclude.
  const one = b.int64([1], []);
  const qpos = b.op('/opt/causal_mask/query_positions/Range', 'Range', [
    scalar(ctx, '/opt/causal_mask/past_length', pastLen),
    scalar(ctx, '/opt/causal_mask/total_length', total),
    one,
  ]);
  const kpos = b.op('/opt/causal_mask/key_positions/Range', 'Range', [
    b.int64([0], []),
    scalar(ctx, '/opt/causal_mask/key_length', total),
    one,
  ]);
  const future = b.op('/opt/causal_mask/Greater', 'Greater', [
    b.op('/opt/causal_mask/key_positions/Unsqueeze', 'Unsqueeze', [kpos, b.int64([0])]),
    b.op('/opt/causal_mask/query_positions/Unsqueeze', 'Unsqueeze', [qpos, b.int64([1])]),
  ]);
  const padded = b.op('/opt/attention_mask/Equal', 'Equal', [mask, b.int64([0], [])]);
  const padKeys = b.op('/opt/attention_mask/Unsqueeze', 'Unsqueeze', [padded, b.int64([1, 2])]);
  const hidden = b.op('/opt/attention_mask/Or', 'Or', [padKeys, future]);
  const bias = b.op('/opt/attention_mask/Where', 'Where', [hidden, b.float([FLOAT32_MIN]), b.float([0])]);
  return { rows, bias };
}

export async function buildOptGraph(ctx: LayerContext, config: Blip2Config): Promise<void> {
  const { b } = ctx;
  const t = optConfig(config);
  const D = t.hiddenSize;
  const query = b.signatureInput(OPT_IO.queryEmbeds);
  const ids = b.signatureInput(OPT_IO.inputIds);
  const mask = b.signatureInput(OPT_IO.attentionMask);
  const numLogits = b.signatureInput(OPT_IO.numLogits);
  const past: { key: string; value: string }[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    past.push({
      key: b.signatureInput(OPT_IO.pastKey(i)),
      value: b.signatureInput(OPT_IO.pastValue(i)),
    });
  }

  const embedName = `${DECODER}.embed_tokens.weight`;
  const embedTable = await ctx.weights.read(embedName, [t.vocabSize, D]);
  const table = b.weight(embedName, embedTable, [t.vocabSize, D]);
  const tokens = b.op('/opt/embed_tokens/Gather', 'Gather', [table, ids], { axis: 0 });
  const inputsEmbeds = b.op('/opt/inputs_embeds/Concat', 'Concat', [query, tokens], { axis: 1 });
  b.signatureOutput(OPT_IO.inputsEmbeds, inputsEmbeds);

  const newTokens = dim(ctx, '/opt/new_length', inputsEmbeds, 1);
  const { rows, bias } = positionsAndMask(ctx, mask, newTokens);
  const positionRows = t.maxPositionEmbeddings + POSITION_OFFSET;
  const positionName = `${DECODER}.embed_positions.weight`;
  const positionTable = b.weight(positionName, await ctx.weights.read(positionName, [positionRows, D]), [
    positionRows,
    D,
  ]);
  const positions = b.op('/opt/embed_positions/Gather', 'Gather', [positionTable, rows], { axis: 0 });
  let h = b.op('/opt/embed_positions/Add', 'Add', [inputsEmbeds, positions]);

  for (let i = 0; i < t.numLayers; i++) {
    const path = `/opt/layers.${i}`;
    const prefix = `${DECODER}.layers.${i}`;
    const normed = await layerNorm(
      ctx,
      `${path}/self_attn_layer_norm`,
      h,
      `${prefix}.self_attn_layer_norm`,
      D,
      t.layerNormEps,
    );
    const sa = await selfAttention(
      ctx,
      `${path}/self_attn`,
      `${prefix}.self_attn`,
      normed,
      bias,
      past[i]!,
      t,
    );
    b.signatureOutput(OPT_IO.presentKey(i), sa.key);
    b.signatureOutput(OPT_IO.presentValue(i), sa.value);
    h = b.op(`${path}/self_attn/residual`, 'Add', [h, sa.out]);

    const ffnIn = await layerNorm(
      ctx,
      `${path}/final_layer_norm`,
      h,
      `${prefix}.final_layer_norm`,
      D,
      t.layerNormEps,
    );
    const fc1 = await linear(ctx, `${path}/fc1`, ffnIn, `${prefix}.fc1`, t.ffnDim, D, { bias: true });
    const act = b.op(`${path}/activation_fn/Relu`, 'Relu', [fc1]);
    const fc2 = await linear(ctx, `${path}/fc2`, act, `${prefix}.fc2`, D, t.ffnDim, { bias: true });
    h = b.op(`${path}/fc2/residual`, 'Add', [h, fc2]);
  }
  const out = await layerNorm(
    ctx,
    '/opt/final_layer_norm',
    h,
    `${DECODER}.final_layer_norm`,
    D,
    t.layerNormEps,
  );
  b.signatureOutput(OPT_IO.hiddenStates, out);

  // Generation needs only the last position's logits: lm_head over all Q + L rows would cost vocab × hidden per
  // row (0.26 GFLOP each at 2.7b).
  const start = b.op('/lm_head/positions/Neg', 'Neg', [numLogits]);
  const last = b.op('/lm_head/positions/Slice', 'Slice', [
    out,
    start,
    b.int64([Number.MAX_SAFE_INTEGER]),
    b.int64([1]),
  ]);
  let logits: string;
  const lmHeadName = `${LM}.lm_head.weight`;
  if (t.tieWordEmbeddings) {
    // Tied (HF's default): lm_head is embed_tokens, whether or not the checkpoint also saved a copy.
    logits = linearFromData(ctx, '/lm_head', last, {
      weight: embedTable,
      n: t.vocabSize,
      k: D,
      names: [embedName],
    });
  } else if (ctx.weights.has(lmHeadName)) {
    logits = await linear(ctx, '/lm_head', last, `${LM}.lm_head`, t.vocabSize, D);
  } else {
    throw new Error(`tie_word_embeddings is false but the checkpoint has no ${lmHeadName}`);
  }
  b.signatureOutput(OPT_IO.logits, logits);
}
