import { type ConvertOptions, convertCheckpoint } from '../../convert/convert.js';
import { WEIGHT_DTYPES, type WeightDtype } from '../../model/graph-io.js';
import { optionalInt, parse, requireString, UsageError } from '../args.js';
import { ProgressBar } from '../progress.js';

export const CONVERT_USAGE = `Usage: blip2-bot convert --from <hf-dir> --out <model-dir> [--dtype fp32|int8|int4|mixed]
                         [--block-size 32] [--accuracy-level 4] [--force]

Converts a Hugging Face BLIP-2 checkpoint into ONNX graphs: FlanT5 (config.json, *.safetensors, tokenizer.json)
or OPT (config.json, *.safetensors, vocab.json + merges.txt or tokenizer.json).
  --dtype            weight format of the large MatMuls (default fp32); int8/int4 use MatMulNBits;
                     mixed: per-channel int8 (DynamicQuantizeMatMul) for vision, Q-Former and T5 encoder,
                     int4 MatMulNBits for the decoder and for OPT (the fastest combination on CPU)
  --block-size       MatMulNBits block size along K (power of two ≥ 16; default 32, 128 with --dtype mixed)
  --accuracy-level   MatMulNBits compute: 0 default, 1 fp32, 2 fp16, 3 bf16, 4 int8 (default 4)
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
  const dtype = (v.dtype ?? 'fp32') as WeightDtype;
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new UsageError(`--dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got "${dtype}"`);
  }
  const bar = new ProgressBar();
  const options: ConvertOptions = {
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
  const s = await convertCheckpoint(from, out, options);
  bar.done();
  console.log(
    [
      `Converted ${from} → ${s.outDir} (${s.dtype})`,
      `  tensors     ${s.tensors}`,
      `  parameters  ${s.parameters.toLocaleString('en-US')}`,
      `  written     ${(s.bytesWritten / 1e6).toFixed(1)} MB`,
      `  time        ${s.seconds.toFixed(1)} s`,
      `  model id    ${s.modelId}`,
    ].join('\n'),
  );
  return 0;
}
