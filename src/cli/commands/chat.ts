import { createInterface } from 'node:readline';
import { DEMO_NOTICE, ensureDemoModel } from '../../demo/demo-model.js';
import type { GenerateResult, Turn } from '../../engine/api.js';
import { Blip2Engine } from '../../engine/engine.js';
import { readImageFile } from '../../engine/image-file.js';
import { DEFAULT_MAX_BYTES } from '../../engine/preprocess.js';
import { checkFile } from '../../util/read-capped-file.js';
import { parse, requireString } from '../args.js';
import { withSpinner } from '../progress.js';

export const CHAT_USAGE = `Usage: blip2-bot chat [--model <dir>] --image <file> [--data-dir data]

An interactive conversation about one picture. Type a question and press Enter; earlier turns are part of the
prompt. /caption describes the picture, /image <file> switches pictures, /quit (or Ctrl-D) leaves.
Follow-ups are served from the image cache: the vision encoder and Q-Former run once per picture.`;

function describeTimings(r: GenerateResult): string {
  const t = r.timings;
  const image = r.imageCached
    ? 'image from cache'
    : `vision ${t.visionMs.toFixed(0)} ms + Q-Former ${t.qformerMs.toFixed(0)} ms`;
  const dropped = r.droppedTurns > 0 ? `, ${r.droppedTurns} oldest turns dropped to fit` : '';
  return `[${image}, encoder ${t.encoderMs.toFixed(0)} ms, ${t.decodeSteps} steps in ${t.decodeMs.toFixed(0)} ms, total ${t.totalMs.toFixed(0)} ms${dropped}]`;
}

export async function chatCommand(argv: string[]): Promise<number> {
  const v = parse(
    argv,
    {
      model: { type: 'string' },
      image: { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    CHAT_USAGE,
  );
  if (v.help) {
    console.log(CHAT_USAGE);
    return 0;
  }
  let imagePath = requireString(v.image, '--image', CHAT_USAGE);
  await checkFile(imagePath, { maxBytes: DEFAULT_MAX_BYTES, what: 'image' });
  const modelDir = v.model ?? (await withSpinner('Preparing the demo model', () => ensureDemoModel()));
  const engine = await withSpinner('Loading model', () =>
    Blip2Engine.load(modelDir, { dataDir: v['data-dir'] ?? 'data' }),
  );
  let rl: ReturnType<typeof createInterface> | undefined;
  try {
    if (engine.demo) console.log(`note: ${DEMO_NOTICE}`);
    const readPicture = async (path: string) => {
      const started = performance.now();
      const key = await withSpinner('Reading the picture', async () =>
        engine.encodeImage(await readImageFile(path)),
      );
      console.log(`[picture ready in ${(performance.now() - started).toFixed(0)} ms]`);
      return key;
    };
    let image = await readPicture(imagePath);
    let history: Turn[] = [];
    console.log(`Talking about ${imagePath}. Ask a question, /caption, /image <file>, /quit.`);
    // Created only now so that piped lines are not consumed while the first picture was being read.
    rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
    // Iterating the interface (not rl.question) keeps lines that arrive before we ask, e.g. from a pipe.
    const prompt = () => process.stdout.write('you> ');
    prompt();
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '') {
        prompt();
        continue;
      }
      if (line === '/quit' || line === '/exit') break;
      if (line.startsWith('/image ')) {
        imagePath = line.slice('/image '.length).trim();
        try {
          image = await readPicture(imagePath);
          history = [];
          console.log(`Now talking about ${imagePath}.`);
        } catch (e) {
          console.log(`bot> ${(e as { userMessage?: string }).userMessage ?? (e as Error).message}`);
        }
        prompt();
        continue;
      }
      const caption = line === '/caption';
      try {
        const result = await withSpinner('Thinking', () =>
          engine.generate(caption ? { image, task: 'caption' } : { image, question: line, history }),
        );
        console.log(`bot> ${result.text || '(no answer)'}`);
        console.log(describeTimings(result));
        if (!caption) history = [...history, { question: line, answer: result.text }];
      } catch (e) {
        console.log(`bot> ${(e as { userMessage?: string }).userMessage ?? (e as Error).message}`);
      }
      prompt();
    }
    return 0;
  } finally {
    rl?.close();
    await engine.close();
  }
}
