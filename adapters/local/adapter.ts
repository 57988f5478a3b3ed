/**
 * A terminal conversation through the same chat core as Discord and Slack, needing no tokens: `/image <path>`
 * sets the picture, then every line is a question about it.
 */
import { homedir } from 'node:os';
import { extname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type {
  ChatHandler,
  ChatMessage,
  ChatOutput,
  IncomingImage,
  PostedMessage,
  RunningAdapter,
} from '../../src/chat/types.js';
import { UserFacingError } from '../../src/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { checkFile, readCappedFile } from '../../src/util/read-capped-file.js';

export const LOCAL_HELP = `Commands:
  /image <path>   talk about this picture (a caption comes first)
  <question>      ask about the current picture
  /caption        describe the current picture again
  /new            forget the conversation
  /help           this text
  /quit           leave (or Ctrl-D)`;

const PROMPT = 'you> ';

const IMAGE_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.avif': 'image/avif',
  '.heic': 'image/heic',
};

export interface LocalAdapterOptions {
  core: ChatHandler;
  logger: Logger;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
  /** Print the banner and help first (default true). */
  greet?: boolean;
  /** A picture to start with, as if the person had typed `/image <path>` (`blip2-bot chat --image`). */
  image?: string;
}

export interface RunningLocalAdapter extends RunningAdapter {
  /** Settles when the person quits or the input ends. */
  readonly done: Promise<void>;
}

/** A picture on disk, as the chat core sees an attachment. */
export async function fileImage(path: string): Promise<IncomingImage> {
  const full = resolve(path.replace(/^~(?=$|\/)/, homedir()));
  // Any size passes here: the chat core compares `size` with its own limit and says "too large" politely.
  const size = await checkFile(full, { maxBytes: Number.MAX_SAFE_INTEGER, what: 'picture' });
  const type = IMAGE_TYPES[extname(full).toLowerCase()];
  return {
    name: full.split(/[\\/]/).pop() ?? full,
    ...(type ? { contentType: type } : {}),
    size,
    download: (maxBytes) => readCappedFile(full, { maxBytes, what: 'picture' }),
  };
}

/** What to do when a question comes without a picture, with the terminal's own command. */
export const LOCAL_USAGE_HINT =
  'Set a picture first with `/image <path>`, then ask about it (or press Enter for a caption).';

class TerminalOutput implements ChatOutput {
  readonly maxMessageLength = Number.POSITIVE_INFINITY;
  readonly canEdit = false;
  readonly usageHint = LOCAL_USAGE_HINT;
  private next = 1;

  constructor(private readonly out: NodeJS.WritableStream) {}

  async send(text: string): Promise<PostedMessage> {
    this.out.write(`bot> ${text.replace(/\n/g, '\n     ')}\n`);
    return { id: String(this.next++) };
  }

  async edit(): Promise<void> {
    throw new Error('a terminal cannot edit what it printed');
  }

  async showTyping(): Promise<void> {}
}

export async function startLocalAdapter(options: LocalAdapterOptions): Promise<RunningLocalAdapter> {
  const input = options.input ?? process.stdin;
  const out = options.output ?? process.stdout;
  const output = new TerminalOutput(out);
  const rl = createInterface({ input, terminal: false });
  // Iterating from the start keeps lines that arrive (from a pipe) while the first picture is being read.
  const lines = rl[Symbol.asyncIterator]();
  let conversation = `terminal-${Date.now()}`;
  let counter = 0;
  let stopped = false;

  if (options.greet ?? true) out.write(`Local chat with the bot. ${LOCAL_HELP}\n`);

  const ask = (text: string, images: IncomingImage[]) => {
    const message: ChatMessage = {
      platform: 'local',
      conversation,
      user: 'local',
      text,
      images,
      addressed: true,
      messageId: `${conversation}-${++counter}`,
    };
    return options.core.handle(message, output);
  };

  const usePicture = async (path: string) => {
    try {
      await ask('', [await fileImage(path)]);
    } catch (err) {
      out.write(
        `${err instanceof UserFacingError ? err.userMessage : `Cannot read ${path}: ${(err as Error).message}`}\n`,
      );
    }
  };

  const loop = async () => {
    if (options.image) await usePicture(options.image);
    out.write(PROMPT);
    // Lines are handled one at a time, in order, so answers never interleave.
    for await (const raw of { [Symbol.asyncIterator]: () => lines }) {
      if (stopped) break;
      const line = raw.trim();
      if (line === '/quit' || line === '/exit') break;
      await handleLine(line);
      out.write(PROMPT);
    }
  };

  const handleLine = async (line: string) => {
    if (line === '') return;
    if (line === '/caption') {
      await ask('', []);
    } else if (line === '/help') {
      out.write(`${LOCAL_HELP}\n`);
    } else if (line === '/new') {
      conversation = `terminal-${Date.now()}`;
      out.write('(conversation forgotten; set a picture with /image <path>)\n');
    } else if (line.startsWith('/image')) {
      const path = line
        .slice('/image'.length)
        .trim()
        .replace(/^(['"])(.*)\1$/, '$2');
      if (!path) {
        out.write('Usage: /image <path to a picture>\n');
        return;
      }
      await usePicture(path);
    } else if (line.startsWith('/')) {
      out.write(`Unknown command ${line.split(/\s/)[0]}. ${LOCAL_HELP}\n`);
    } else {
      await ask(line, []);
    }
  };
  const done = loop()
    .catch((err) => options.logger.error('terminal chat failed', err))
    .finally(() => rl.close());

  return {
    name: 'local',
    done,
    async stop() {
      stopped = true;
      rl.close();
      await done;
    },
  };
}
