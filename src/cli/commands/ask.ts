import { DEMO_NOTICE, ensureDemoModel } from '../../demo/demo-model.js';
import type { GenerateRequest, GenerationOptions } from '../../engine/api.js';
import { Blip2Engine } from '../../engine/engine.js';
import { readImageFile } from '../../engine/image-file.js';
import { readCappedFile } from '../../util/read-capped-file.js';
import { optionalInt, optionalNumber, parse, parseIds, UsageError } from '../args.js';
import { withSpinner } from '../progress.js';
import { loadPixelValues } from './inspect.js';

export const ASK_USAGE = `Usage: blip2-bot ask [--model <dir>] (--image <file> | --pixel-values <file.safetensors>)
                     [--question "..." | --question-file <file|-> | --prompt "..." | --input-ids 1,2,3]
                     [--num-beams N] [--max-new-tokens N] [--min-new-tokens N] [--length-penalty X]
                     [--sample --temperature X --top-k N --top-p X --seed N] [--json] [--data-dir data]

Answers a question about an image (or captions it when no question is given).
  --model        converted model dir (default: the demo model, written on first use; answers are meaningless)
  --question-file  read the question from a file, or from standard input with "-" (for long questions)
  --prompt       used verbatim, e.g. "a photo of" for a caption prefix
  --input-ids    the full prompt as token ids, </s> included (FlanT5: last; OPT: bos 2 first); generation then
                 has no minimum length (as HF's generate), other defaults are the caption's unless given (5 beams,
                 at most 30 new tokens)
  --json         print { "text", "ids", "timings" }; ids are the generated ids after the decoder start token
                 (HF's generate output without its first id: FlanT5's 0, OPT's prepended bos 2)`;

/** Far above any question the model takes (its prompt budget is a few hundred tokens); the engine says "too long". */
const MAX_QUESTION_FILE_BYTES = 256 * 1024;

/** `--question-file <file>`, or `-` for standard input, read with a cap. */
async function readQuestionFile(path: string): Promise<string> {
  if (path !== '-') {
    const bytes = await readCappedFile(path, { maxBytes: MAX_QUESTION_FILE_BYTES, what: 'question file' });
    return new TextDecoder().decode(bytes);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > MAX_QUESTION_FILE_BYTES) {
      process.stdin.destroy();
      throw new UsageError(
        `the question on standard input is longer than ${MAX_QUESTION_FILE_BYTES / 1024} KB; please shorten it`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function askCommand(argv: string[]): Promise<number> {
  const v = parse(
    argv,
    {
      model: { type: 'string' },
      image: { type: 'string' },
      'pixel-values': { type: 'string' },
      question: { type: 'string' },
      'question-file': { type: 'string' },
      prompt: { type: 'string' },
      'input-ids': { type: 'string' },
      'num-beams': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      'min-new-tokens': { type: 'string' },
      'length-penalty': { type: 'string' },
      sample: { type: 'boolean' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    ASK_USAGE,
  );
  if (v.help) {
    console.log(ASK_USAGE);
    return 0;
  }
  if ((v.image === undefined) === (v['pixel-values'] === undefined)) {
    throw new UsageError(
      `give exactly one of --image <file> or --pixel-values <file.safetensors>\n\n${ASK_USAGE}`,
    );
  }
  const promptKinds = [v.question, v['question-file'], v.prompt, v['input-ids']].filter(
    (x) => x !== undefined,
  ).length;
  if (promptKinds > 1) {
    throw new UsageError('give at most one of --question, --question-file, --prompt or --input-ids');
  }

  const options: GenerationOptions = {};
  const set = <K extends keyof GenerationOptions>(key: K, value: GenerationOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set('numBeams', optionalInt(v['num-beams'], '--num-beams', 1));
  set('maxNewTokens', optionalInt(v['max-new-tokens'], '--max-new-tokens', 1));
  set('minNewTokens', optionalInt(v['min-new-tokens'], '--min-new-tokens', 0));
  set('lengthPenalty', optionalNumber(v['length-penalty'], '--length-penalty'));
  set('temperature', optionalNumber(v.temperature, '--temperature'));
  set('topK', optionalInt(v['top-k'], '--top-k', 0));
  set('topP', optionalNumber(v['top-p'], '--top-p'));
  set('seed', optionalInt(v.seed, '--seed', 0));
  if (v.sample) options.doSample = true;

  // Everything the person gave is read and checked before the model loads: a bad path answers at once.
  const request: GenerateRequest = {
    image: v.image
      ? await readImageFile(v.image)
      : { pixelValues: await loadPixelValues(v['pixel-values']!) },
    options,
  };
  if (v.question !== undefined) request.question = v.question;
  if (v['question-file'] !== undefined) request.question = await readQuestionFile(v['question-file']);
  if (v.prompt !== undefined) request.prompt = v.prompt;
  if (v['input-ids'] !== undefined) {
    request.inputIds = parseIds(v['input-ids'], '--input-ids');
    // Raw ids are for parity checks against HF, whose generate() has no minimum; the caption's 8 would differ.
    if (options.minNewTokens === undefined) options.minNewTokens = 0;
  }

  const modelDir = v.model ?? (await withSpinner('Preparing the demo model', () => ensureDemoModel()));
  const engine = await withSpinner('Loading model', () =>
    Blip2Engine.load(modelDir, { dataDir: v['data-dir'] ?? 'data' }),
  );
  try {
    if (engine.demo) console.error(`note: ${DEMO_NOTICE}`);
    const result = await withSpinner('Thinking', () => engine.generate(request));
    if (v.json) {
      console.log(JSON.stringify({ text: result.text, ids: result.ids, timings: result.timings }));
    } else {
      console.log(result.text);
      const t = result.timings;
      console.error(
        `(${result.imageCached ? 'image from cache' : `vision ${t.visionMs.toFixed(0)} ms, Q-Former ${t.qformerMs.toFixed(0)} ms`}, encoder ${t.encoderMs.toFixed(0)} ms, ${t.decodeSteps} decoder steps ${t.decodeMs.toFixed(0)} ms, total ${t.totalMs.toFixed(0)} ms)`,
      );
    }
    return 0;
  } finally {
    await engine.close();
  }
}
