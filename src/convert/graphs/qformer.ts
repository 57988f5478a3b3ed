/**
 * Q-Former + language projection: `image_embeds [B,S,Dv]` → `qformer_output [B,Q,Hq]` and
 * `query_embeds [B,Q,d_model]`. BERT-style post-LN layers over the learned query tokens, with cross-attention to
 * the image every `cross_attention_frequency` layers; only the query branch of the feed-forward is used.
 */
import { type Blip2Config, languageModelWidth } from '../../model/config.js';
import { QFORMER_IO } from '../../model/graph-io.js';
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

const P = 'qformer';

/** Self- or cross-attention block followed by `LayerNorm(dense(context) + input)`. */
async function attentionBlock(
  ctx: LayerContext,
  path: string,
  prefix: string,
  h: string,
  kvSource: string,
  kvDim: number,
  config: Blip2Config,
): Promise<string> {
  const { b } = ctx;
  const q = config.qformer;
  const D = q.hiddenSize;
  const headDim = D / q.numHeads;
  const scale = 1 / Math.sqrt(headDim);
  const qw = await ctx.weights.read(`${prefix}.attention.query.weight`, [D, D]);
  const qb = await ctx.weights.read(`${prefix}.attention.query.bias`, [D]);
  // The 1/sqrt(head_dim) score scale is folded into the query projection.
  for (let i = 0; i < qw.length; i++) qw[i]! *= scale;
  for (let i = 0; i < qb.length; i++) qb[i]! *= scale;
  const query = linearFromData(ctx, `${path}/query`, h, { weight: qw, n: D, k: D, bias: qb });
  const key = await linear(ctx, `${path}/key`, kvSource, `${prefix}.attention.key`, D, kvDim, { bias: true });
  const value = await linear(ctx, `${path}/value`, kvSource, `${prefix}.attention.value`, D, kvDim, {
    bias: true,
  });
  const attn = scaledDotAttention(
    b,
    path,
    splitHeads(b, `${path}/query`, query, q.numHeads, headDim),
    splitHeads(b, `${path}/key`, key, q.numHeads, headDim, true),
    splitHeads(b, `${path}/value`, value, q.numHeads, headDim),
  );
  const merged = mergeHeads(b, `${path}/merge`, attn, D);
  const dense = await linear(ctx, `${path}/output/dense`, merged, `${prefix}.output.dense`, D, D, {
    bias: true,
  });
  const res = b.op(`${path}/output/residual`, 'Add', [dense, h]);
  return layerNorm(ctx, `${path}/output/LayerNorm`, res, `${prefix}.output.LayerNorm`, D, q.layerNormEps);
}

export async function buildQFormerGraph(ctx: LayerContext, config: Blip2Config): Promise<void> {
  const { b } = ctx;
  const q = config.qformer;
  const D = q.hiddenSize;
  const Q = config.numQueryTokens;
  const Dv = q.encoderHiddenSize;
  const image = b.signatureInput(QFORMER_IO.imageEmbeds);

  const tokens = b.weight('query_tokens', await ctx.weights.read('query_tokens', [1, Q, D]), [1, Q, D]);
  const normed = await layerNorm(ctx, '/qformer/layernorm', tokens, `${P}.layernorm`, D, q.layerNormEps);
  const batch = b.op('/qformer/batch/Shape', 'Shape', [image], { start: 0, end: 1 });
  const shape = b.op('/qformer/queries/shape', 'Concat', [batch, b.int64([Q, D])], { axis: 0 });
  let h = b.op('/qformer/queries/Expand', 'Expand', [normed, shape]);

  for (let i = 0; i < q.numLayers; i++) {
    const prefix = `${P}.encoder.layer.${i}`;
    const path = `/qformer/layer.${i}`;
    h = await attentionBlock(ctx, `${path}/attention`, `${prefix}.attention`, h, h, D, config);
    if (i % q.crossAttentionFrequency === 0) {
      h = await attentionBlock(
        ctx,
        `${path}/crossattention`,
        `${prefix}.crossattention`,
        h,
        image,
        Dv,
        config,
      );
    }
    const inter = await linear(
      ctx,
      `${path}/intermediate_query/dense`,
      h,
      `${prefix}.intermediate_query.dense`,
      q.intermediateSize,
      D,
      {
        bias: true,
      },
    );
    const act = gelu(b, `${path}/intermediate_query/act`, inter);
    const out = await linear(
      ctx,
      `${path}/output_query/dense`,
      act,
      `${prefix}.output_query.dense`,
      D,
      q.intermediateSize,
      {
        bias: true,
      },
    );
    const res = b.op(`${path}/output_query/residual`, 'Add', [out, h]);
    h = await layerNorm(
      ctx,
      `${path}/output_query/LayerNorm`,
      res,
      `${prefix}.output_query.LayerNorm`,
      D,
      q.layerNormEps,
    );
  }
  b.signatureOutput(QFORMER_IO.qformerOutput, h);
  const dModel = languageModelWidth(config);
  const projected = await linear(ctx, '/language_projection', h, 'language_projection', dModel, D, {
    bias: true,
  });
  b.signatureOutput(QFORMER_IO.queryEmbeds, projected);
}
