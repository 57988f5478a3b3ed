import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { type LoadedTensor, readSafetensorsFile, writeSafetensors } from '../../src/convert/safetensors.js';
import { writeTinyCheckpoint } from '../../src/convert/synthetic.js';
import { Blip2Model } from '../../src/engine/model.js';

/** Rewrites a checkpoint dir's tensors through `edit`, keeping its other files. */
async function rewrite(
  src: string,
  dst: string,
  edit: (t: Map<string, LoadedTensor>) => void,
): Promise<void> {
  const tensors = await readSafetensorsFile(join(src, 'model.safetensors'));
  edit(tensors);
  for (const f of readdirSync(src))
    if (f !== 'model.safetensors') writeFileSync(join(dst, f), readFileSync(join(src, f)));
  await writeSafetensors(
    join(dst, 'model.safetensors'),
    [...tensors].map(([name, t]) => ({
      name,
      dtype: 'F32' as const,
      shape: t.shape,
      data: t.data as Float32Array,
    })),
  );
}

describe('checkpoint variants', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-variants-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('older checkpoints with separate q_bias / v_bias convert to the same vision encoder as qkv.bias', async () => {
    const modern = join(work, 'modern');
    const older = join(work, 'older');
    await writeTinyCheckpoint(modern, 3);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(older);
    await rewrite(modern, older, (tensors) => {
      for (const name of [...tensors.keys()].filter((n) => n.endsWith('self_attn.qkv.bias'))) {
        const bias = tensors.get(name)!.data as Float32Array;
        const d = bias.length / 3;
        const prefix = name.slice(0, -'qkv.bias'.length);
        expect(Array.from(bias.subarray(d, 2 * d)).every((x) => x === 0)).toBe(true); // k has no bias
        tensors.delete(name);
        tensors.set(`${prefix}q_bias`, { dtype: 'F32', shape: [d], data: bias.slice(0, d) });
        tensors.set(`${prefix}v_bias`, { dtype: 'F32', shape: [d], data: bias.slice(2 * d) });
      }
    });
    const outputs: Float32Array[] = [];
    for (const dir of [modern, older]) {
      await convertCheckpoint(dir, `${dir}-onnx`);
      const model = await Blip2Model.load(`${dir}-onnx`);
      const pixels = Float32Array.from({ length: 3 * 224 * 224 }, (_, i) => Math.sin(i / 97));
      outputs.push((await model.visionEncode({ data: pixels, dims: [1, 3, 224, 224] })).data);
      await model.release();
    }
    expect(outputs[1]).toEqual(outputs[0]);
  });

  it('copies the tokenizer files it reads, not the unread generation_config.json (item 21)', async () => {
    const src = join(work, 'genconf-src');
    await writeTinyCheckpoint(src, 5);
    writeFileSync(join(src, 'generation_config.json'), JSON.stringify({ decoder_start_token_id: 0 }));
    const out = join(work, 'genconf');
    await convertCheckpoint(src, out, { dtype: 'fp32' });
    expect(readdirSync(out)).not.toContain('generation_config.json');
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.tokenizerFiles).toContain('tokenizer.json');
    expect(manifest.tokenizerFiles).not.toContain('generation_config.json');
  });

  it('a text config without tie_word_embeddings gets the T5 default: lm_head = shared, output scaled by d_model^-0.5', async () => {
    const src = join(work, 'tied-src');
    await writeTinyCheckpoint(src, 4);
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    const dModel: number = config.text_config.d_model;
    const { mkdirSync } = await import('node:fs');
    // Tied: no lm_head, no tie flag. Untied twin: lm_head = shared · d_model^-0.5, which must give the same logits.
    const tied = join(work, 'tied');
    const twin = join(work, 'twin');
    mkdirSync(tied);
    mkdirSync(twin);
    await rewrite(src, tied, (t) => t.delete('language_model.lm_head.weight'));
    const tiedConfig = structuredClone(config);
    delete tiedConfig.text_config.tie_word_embeddings;
    writeFileSync(join(tied, 'config.json'), JSON.stringify(tiedConfig));
    await rewrite(src, twin, (t) => {
      const shared = t.get('language_model.shared.weight')!;
      const scaled = Float32Array.from(shared.data as Float32Array, (v) => v * dModel ** -0.5);
      t.set('language_model.lm_head.weight', { dtype: 'F32', shape: shared.shape, data: scaled });
    });
    const logits: Float32Array[] = [];
    for (const dir of [tied, twin]) {
      await convertCheckpoint(dir, `${dir}-onnx`);
      const model = await Blip2Model.load(`${dir}-onnx`);
      expect(model.config.text.tieWordEmbeddings).toBe(dir === tied);
      const state = await model.encode(undefined, [37, 629, 19, 1]);
      logits.push(await model.decoder(state).step([0]));
      await model.release();
    }
    let max = 0;
    for (let i = 0; i < logits[0]!.length; i++)
      max = Math.max(max, Math.abs(logits[0]![i]! - logits[1]![i]!));
    expect(max).toBeLessThan(1e-4);
  });
  it('ignores tensors the graphs do not use (Q-Former text branch, embed_tokens copies) with a note', async () => {
    const dir = join(work, 'with-unused');
    await writeTinyCheckpoint(dir, 5, { includeUnused: true });
    const lines: string[] = [];
    const summary = await convertCheckpoint(dir, join(work, 'with-unused-onnx'), {
      log: (l) => lines.push(l),
    });
    expect(summary.unusedTensors).toContain('language_model.encoder.embed_tokens.weight');
    expect(summary.unusedTensors.some((n) => n.startsWith('qformer.encoder.layer.0.intermediate.'))).toBe(
      true,
    );
    expect(summary.unusedTensors.some((n) => n.startsWith('vision_model.') || n.includes('_query.'))).toBe(
      false,
    );
    expect(lines.join('\n')).toMatch(new RegExp(`ignored ${summary.unusedTensors.length} unused tensors`));
  });
});
