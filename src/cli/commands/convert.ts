import { type ConvertModelOptions, convertModel } from '../../calibrate/convert-model.js';
import { WEIGHT_DTYPES, type WeightDtype } from '../../model/graph-io.js';
import { optionalInt, parse, requireString, UsageError } from '../args.js';
import { ProgressBar } from '../progress.js';

export const CONVERT_USAGE = `Usage: blip2-bot convert --from <hf-dir> --out <model-dir> [--dtype auto|fp32|int8|int4|mixed]
                         [--block-size 128] [--accuracy-level 4|1] [--force]

Converts a Hugging Face BLIP-2 checkpoint into ONNX graphs: FlanT5 (config.json, *.safetensors, tokenizer.json)
or OPT (config.json, *.safetensors, vocab.json + merges.txt or tokenizer.json).
  --dtype            weight format of the large MatMuls (default auto):
                     auto   calibrated on your weights: runs the fp32 model on bundled photos and gives each MatMul
                            the fastest kernel whose measured error stays within bounds (prints a fidelity report)
                     mixed  per-channel int8 (DynamicQuantizeMatMul) for the vision encoder, int4 MatMulNBits for
                            the language model (T5 encoder, cross K/V and decoder, or OPT)
                     int8, int4  MatMulNBits everywhere; fp32  no quantisation
                     In every format the Q-Former stays fp32 and T5's feed-forward output (wo) never quantises
                     its activations (models/README.md says why).
  --block-size       MatMulNBits block size along K (power of two ≥ 16; default 128 for auto and mixed, else 32)
  --accuracy-level   MatMulNBits activations for int8/int4/mixed: 4 int8 (default, fastest) or 1 fp32
  --force            replace an existing converted model in --out`;

export async function convertCommand(argv: string[]): Promise<number> {
  const v = parse(
    argv,
    {
      from: { type: 'string' },
      out: { type: 'string' },
      dtype: { type: 'string' },
      'block-size': { type: 'string' },
      'accuracy-level': { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    CONVERT_USAGE,
  );
  if (v.help) {
    console.log(CONVERT_USAGE);
    return 0;
  }
  const from = requireString(v.from, '--from', CONVERT_USAGE);
  const out = requireString(v.out, '--out', CONVERT_USAGE);
  const dtype = (v.dtype ?? 'auto') as WeightDtype;
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new UsageError(`--dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got "${dtype}"`);
  }
  const bar = new ProgressBar();
  const options: ConvertModelOptions = {
    dtype,
    force: v.force ?? false,
    onProgress: ({ graph, tensorsRead, tensorsTotal }) =>
      bar.update(tensorsRead / tensorsTotal, `${graph} (${tensorsRead}/${tensorsTotal} tensors)`),
    log: (line) => {
      bar.done();
      console.error(line);
    },
  };
  const blockSize = optionalInt(v['block-size'], '--block-size', 16);
  const accuracyLevel = optionalInt(v['accuracy-level'], '--accuracy-level', 0);
  if (blockSize !== undefined) options.blockSize = blockSize;
  if (accuracyLevel !== undefined) options.accuracyLevel = accuracyLevel;
  const s = await convertModel(from, out, options);
  bar.done();
  console.log(
    [
      `Converted ${from} → ${s.outDir} (${s.dtype})`,
      `  tensors     ${s.tensors}`,
      `  parameters  ${s.parameters.toLocaleString('en-US')}`,
      `  written     ${(s.bytesWritten / 1e6).toFixed(1)} MB`,
      `  time        ${s.seconds.toFixed(1)} s`,
      `  model id    ${s.modelId}`,
      '',
      ...s.report,
    ].join('\n'),
  );
  return 0;
}
