import { readSafetensorsFile, writeSafetensors } from '../../convert/safetensors.js';
import { readImageFile } from '../../engine/image-file.js';
import { Blip2Model, type FloatTensor } from '../../engine/model.js';
import { parsePreprocessorConfig, preprocessImage } from '../../engine/preprocess.js';
import { generationTokenIds } from '../../model/config.js';
import { parse, parseIds, requireString, UsageError } from '../args.js';
import { withSpinner } from '../progress.js';

export const INSPECT_USAGE = `Usage: blip2-bot inspect --model <model-dir> (--image <file> | --pixel-values <file.safetensors>)
                         [--input-ids 1,2,3] --out <dump.safetensors>

Runs every graph once and writes float32 tensors named as HF computes them, to compare with a PyTorch dump:
  pixel_values, vision.last_hidden_state, qformer.last_hidden_state, language_projection, then
  FlanT5: t5.encoder.last_hidden_state, t5.logits.step0 (decoder input [[decoder_start_token_id]]);
  OPT: opt.inputs_embeds, opt.last_hidden_state, opt.logits (every position of [queries; prompt]).
--pixel-values takes a safetensors file with a tensor named "pixel_values" (or the first tensor) [1,3,H,W].
--input-ids is the full prompt, </s> included (FlanT5 at the end, OPT's bos first; default: "Question: what is
in the picture? Answer:").`;

/** Ids of "Question: what is in the picture? Answer:" + </s> in the FlanT5 vocabulary. */
export const DEFAULT_PROMPT_IDS = [11860, 10, 125, 19, 16, 8, 1554, 58, 11801, 10, 1];
/** The same prompt for OPT's GPT-2 vocabulary: bos </s> first. */
export const DEFAULT_OPT_PROMPT_IDS = [2, 45641, 35, 99, 16, 11, 5, 2170, 116, 31652, 35];

/** Loads `pixel_values` [1,3,H,W] from a safetensors file. */
export async function loadPixelValues(path: string): Promise<FloatTensor> {
  const tensors = await readSafetensorsFile(path);
  const t = tensors.get('pixel_values') ?? [...tensors.values()][0];
  if (!t || !(t.data instanceof Float32Array) || t.shape.length !== 4) {
    throw new UsageError(`${path} has no float tensor "pixel_values" of shape [1, 3, H, W]`);
  }
  return { data: t.data, dims: t.shape };
}

export async function pixelsFromArgs(
  model: Blip2Model,
  image?: string,
  pixelValues?: string,
): Promise<FloatTensor> {
  if ((image === undefined) === (pixelValues === undefined)) {
    throw new UsageError('give exactly one of --image <file> or --pixel-values <file.safetensors>');
  }
  if (pixelValues) return loadPixelValues(pixelValues);
  const config = parsePreprocessorConfig(await model.preprocessorConfig());
  const result = await preprocessImage(await readImageFile(image!), config);
  return { data: result.data, dims: [...result.dims] };
}

export async function inspectCommand(argv: string[]): Promise<number> {
  const v = parse(
    argv,
    {
      model: { type: 'string' },
      image: { type: 'string' },
      'pixel-values': { type: 'string' },
      'input-ids': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    INSPECT_USAGE,
  );
  if (v.help) {
    console.log(INSPECT_USAGE);
    return 0;
  }
  const modelDir = requireString(v.model, '--model', INSPECT_USAGE);
  const out = requireString(v.out, '--out', INSPECT_USAGE);
  const model = await withSpinner('Loading model', () => Blip2Model.load(modelDir));
  try {
    const opt = model.config.languageModel === 'opt';
    const ids = v['input-ids']
      ? parseIds(v['input-ids'], '--input-ids')
      : opt
        ? DEFAULT_OPT_PROMPT_IDS
        : DEFAULT_PROMPT_IDS;
    const pixels = await pixelsFromArgs(model, v.image, v['pixel-values']);
    const image = await model.visionEncode(pixels);
    const { qformerOutput, queryEmbeds } = await model.queryEncode(image);
    const dump: [string, FloatTensor][] = [
      ['pixel_values', pixels],
      ['vision.last_hidden_state', image],
      ['qformer.last_hidden_state', qformerOutput],
      ['language_projection', queryEmbeds],
    ];
    if (opt) {
      const positions = (queryEmbeds.dims[1] ?? 0) + ids.length;
      const out = await model.optForward(queryEmbeds, ids, positions);
      dump.push(
        ['opt.inputs_embeds', out.inputsEmbeds],
        ['opt.last_hidden_state', out.hidden],
        ['opt.logits', out.logits],
      );
    } else {
      const state = await model.encode(queryEmbeds, ids);
      if (state.kind !== 't5') throw new Error('expected a FlanT5 encoder state');
      const logits = await model.decoder(state).step([generationTokenIds(model.config).decoderStartTokenId]);
      dump.push(
        ['t5.encoder.last_hidden_state', state.hidden],
        ['t5.logits.step0', { data: logits, dims: [1, 1, model.config.text.vocabSize] }],
      );
    }
    await writeSafetensors(
      out,
      dump.map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.dims, data: t.data })),
      { input_ids: ids.join(','), model_id: model.modelId },
    );
    for (const [name, t] of dump) console.log(`${name.padEnd(30)} [${t.dims.join(', ')}]`);
    console.log(`wrote ${out}`);
    return 0;
  } finally {
    await model.release();
  }
}
