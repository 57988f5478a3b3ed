import Keyv from 'keyv';
import { startLocalAdapter } from '../../../adapters/local/index.js';
import { ChatCore } from '../../chat/core.js';
import { DEMO_NOTICE, ensureDemoModel } from '../../demo/demo-model.js';
import { Blip2Engine } from '../../engine/engine.js';
import { DEFAULT_MAX_BYTES } from '../../engine/preprocess.js';
import { createLogger } from '../../util/logger.js';
import { checkFile } from '../../util/read-capped-file.js';
import { parse, requireString } from '../args.js';
import { withSpinner } from '../progress.js';

export const CHAT_USAGE = `Usage: blip2-bot chat [--model <dir>] --image <file> [--data-dir data]

An interactive conversation about one picture: the same terminal chat as \`blip2-bot start\` without tokens
(one implementation, through the bot's chat core). Type a question and press Enter; earlier turns are part of the
prompt. /caption describes the picture, /image <file> switches pictures, /new forgets, /help, /quit (or Ctrl-D).
Follow-ups are served from the image cache: the vision encoder and Q-Former run once per picture.`;

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
  const imagePath = requireString(v.image, '--image', CHAT_USAGE);
  await checkFile(imagePath, { maxBytes: DEFAULT_MAX_BYTES, what: 'image' });
  const modelDir = v.model ?? (await withSpinner('Preparing the demo model', () => ensureDemoModel()));
  const engine = await withSpinner('Loading model', () =>
    Blip2Engine.load(modelDir, { dataDir: v['data-dir'] ?? 'data' }),
  );
  // Only warnings reach the terminal: info lines would interleave with the conversation.
  const logger = createLogger({ level: 'warn' });
  const conversations = new Keyv();
  const core = new ChatCore({ engine, conversations, logger: logger.child('chat') });
  try {
    if (engine.demo) console.log(`note: ${DEMO_NOTICE}`);
    console.log(`Talking about ${imagePath}. Ask a question, /caption, /image <file>, /help, /quit.`);
    const terminal = await startLocalAdapter({ core, logger, greet: false, image: imagePath });
    await terminal.done;
    return 0;
  } finally {
    await core.shutdown(10_000);
    await engine.close();
    await conversations.disconnect().catch(() => {});
  }
}
