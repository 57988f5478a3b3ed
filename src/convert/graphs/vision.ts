/**
 * BLIP-2 vision encoder (EVA ViT-g): `pixel_values [B,3,H,W]` → `image_embeds [B,S,Dv]`, HF's
 * `vision_model(...).last_hidden_state` (post-layernorm applied to every token).
 */
import type { Blip2Config } from '../../model/config.js';
import { visionSequenceLength } from '../../model/config.js';
import { VISION_IO } from '../../model/graph-io.js';
import {
  gelu,
  type LayerContext,
  layerNorm,
  linear,
  linearFromData,
  mergeHeads,
  scaledDotAttention,
  splitHeads,
} from '../layers.js';

const P = 'vision_model';

/** Reads the fused qkv weight and bias; older checkpoints store `q_bias`/`v_bias` instead of `qkv.bias`. */
async function readQkv(ctx: LayerContext, prefix: string, dim: number, scale: number) {
  const weight = await ctx.weights.read(`${prefix}.qkv.weight`, [3 * dim, dim]);
  let bias: Float32Array;
  if (ctx.weights.has(`${prefix}.qkv.bias`)) {
    bias = await ctx.weights.read(`${prefix}.qkv.bias`, [3 * dim]);
  } else {
    bias = new Float32Array(3 * dim);
    bias.set(await ctx.weights.read(`${prefix}.q_bias`, [dim]), 0);
    bias.set(await ctx.weights.read(`${prefix}.v_bias`, [dim]), 2 * dim);
  }
  // Folding the 1/sqrt(head_dim) attention scale into the query rows saves a Mul per layer.
  for (let i = 0; i < dim * dim; i++) weight[i]! *= scale;
  for (let i = 0; i < dim; i++) bias[i]! *= scale;
  return { weight, bias };
}

export async function buildVisionGraph(ctx: LayerContext, config: Blip2Config): Promise<void> {
  const { b } = ctx;
  const v = config.vision;
  const D = v.hiddenSize;
  const heads = v.numHeads;
  const headDim = D / heads;
  const seq = visionSequenceLength(v);
  const pixels = b.signatureInput(VISION_IO.pixelValues);

  // Patch embedding: a conv with kernel = stride = patch, then patches in row-major order after the CLS token.
  const convW = b.weight(
    `${P}.embeddings.patch_embedding.weight`,
    await ctx.weights.read(`${P}.embeddings.patch_embedding.weight`, [
      D,
      v.numChannels,
      v.patchSize,
      v.patchSize,
    ]),
    [D, v.numChannels, v.patchSize, v.patchSize],
  );
  const convB = b.weight(
    `${P}.embeddings.patch_embedding.bias`,
    await ctx.weights.read(`${P}.embeddings.patch_embedding.bias`, [D]),
    [D],
  );
  const conv = b.op('/vision/embeddings/patch_embedding/Conv', 'Conv', [pixels, convW, convB], {
    kernel_shape: [v.patchSize, v.patchSize],
    strides: [v.patchSize, v.patchSize],
  });
  const flat = b.op('/vision/embeddings/patches/Reshape', 'Reshape', [conv, b.int64([0, D, -1])]);
  const patches = b.op('/vision/embeddings/patches/Transpose', 'Transpose', [flat], { perm: [0, 2, 1] });
  const cls = b.weight(
    `${P}.embeddings.class_embedding`,
    await ctx.weights.read(`${P}.embeddings.class_embedding`, [1, 1, D]),
    [1, 1, D],
  );
  const batch = b.op('/vision/embeddings/batch/Shape', 'Shape', [pixels], { start: 0, end: 1 });
  const clsShape = b.op('/vision/embeddings/cls/shape', 'Concat', [batch, b.int64([1, D])], { axis: 0 });
  const clsB = b.op('/vision/embeddings/cls/Expand', 'Expand', [cls, clsShape]);
  const tokens = b.op('/vision/embeddings/Concat', 'Concat', [clsB, patches], { axis: 1 });
  const pos = b.weight(
    `${P}.embeddings.position_embedding`,
    await ctx.weights.read(`${P}.embeddings.position_embedding`, [1, seq, D]),
    [1, seq, D],
  );
  let h = b.op('/vision/embeddings/AddPosition', 'Add', [tokens, pos]);

  const scale = 1 / Math.sqrt(headDim);
  for (let i = 0; i < v.numLayers; i++) {
    const prefix = `${P}.encoder.layers.${i}`;
    const path = `/vision/layers.${i}`;
    const n1 = await layerNorm(ctx, `${path}/layer_norm1`, h, `${prefix}.layer_norm1`, D, v.layerNormEps);
    const qkvW = await readQkv(ctx, `${prefix}.self_attn`, D, scale);
    const qkv = linearFromData(ctx, `${path}/attn/qkv`, n1, {
      weight: qkvW.weight,
      n: 3 * D,
      k: D,
      bias: qkvW.bias,
    });
    const [q, k, val] = b.opN(
      `${path}/attn/qkv/Split`,
      'Split',
      [qkv, b.int64([D, D, D])],
      { axis: -1 },
      { outputs: 3 },
    );
    const qh = splitHeads(b, `${path}/attn/q`, q!, heads, headDim);
    const kT = splitHeads(b, `${path}/attn/k`, k!, heads, headDim, true);
    const vh = splitHeads(b, `${path}/attn/v`, val!, heads, headDim);
    const ctxh = scaledDotAttention(b, `${path}/attn`, qh, kT, vh);
    const merged = mergeHeads(b, `${path}/attn/merge`, ctxh, D);
    const proj = await linear(
      ctx,
      `${path}/attn/projection`,
      merged,
      `${prefix}.self_attn.projection`,
      D,
      D,
      { bias: true },
    );
    h = b.op(`${path}/attn/residual`, 'Add', [h, proj]);

    const n2 = await layerNorm(ctx, `${path}/layer_norm2`, h, `${prefix}.layer_norm2`, D, v.layerNormEps);
    const fc1 = await linear(ctx, `${path}/mlp/fc1`, n2, `${prefix}.mlp.fc1`, v.intermediateSize, D, {
      bias: true,
    });
    const act = gelu(b, `${path}/mlp/act`, fc1);
    const fc2 = await linear(ctx, `${path}/mlp/fc2`, act, `${prefix}.mlp.fc2`, D, v.intermediateSize, {
      bias: true,
    });
    h = b.op(`${path}/mlp/residual`, 'Add', [h, fc2]);
  }
  const out = await layerNorm(ctx, '/vision/post_layernorm', h, `${P}.post_layernorm`, D, v.layerNormEps);
  b.signatureOutput(VISION_IO.imageEmbeds, out);
}
