/**
 * `blip2-bot <command>`: one entry point for converting, inspecting, asking, chatting and running the bot.
 * Each command lives in its own module and is loaded only when used.
 */
import { UserFacingError } from '../errors.js';
import { UsageError } from './args.js';
import { checkCommandLine } from './command-line.js';

const USAGE = `blip2-bot: talk about pictures with BLIP-2 on Discord, Slack or the terminal

Usage: blip2-bot <command> [options]     (blip2-bot <command> --help for details)

  start      run the bot: every adapter whose credentials are set (Discord, Slack), else the terminal chat
  worker     scaled out: load the model and answer the jobs of \`start --role front\` (QUEUE_URL)
  ask        answer one question (or caption) about an image
  chat       an interactive terminal conversation about one image
  convert    convert a Hugging Face BLIP-2 FlanT5 checkpoint to ONNX (calibrated auto, or fp32, int8, int4, mixed)
  inspect    run the graphs once and dump every intermediate tensor (parity checks)
  models     pull: download and convert a model from the Hugging Face Hub; demo: write the tiny random demo
             model; synth: write a random full-size checkpoint`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  convert: async () => (await import('./commands/convert.js')).convertCommand,
  inspect: async () => (await import('./commands/inspect.js')).inspectCommand,
  ask: async () => (await import('./commands/ask.js')).askCommand,
  chat: async () => (await import('./commands/chat.js')).chatCommand,
  models: async () => (await import('./commands/models.js')).modelsCommand,
  start: async () => (await import('./commands/start.js')).startCommand,
  worker: async () => (await import('./commands/worker.js')).workerCommand,
};

// Errors we raise on purpose extend UserFacingError (src/errors.ts) and are printed as one line without a stack
// trace. There is no list of class names here any more: to add an error class, declare it
// `class MyError extends UserFacingError` (or a subclass such as InputError) with a stable `code`.

/** File-system errors worth a one-line answer instead of a stack trace. */
const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`blip2-bot: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    checkCommandLine(name, rest);
    return await (await load())(rest);
  } catch (e) {
    const err = e as Error;
    if (err instanceof UsageError) {
      console.error(`blip2-bot ${name}: ${err.message}`);
      return 2;
    }
    const fsError = err as NodeJS.ErrnoException;
    if (fsError.path && fsError.code && FILE_ERRORS[fsError.code]) {
      console.error(`blip2-bot ${name}: cannot read ${fsError.path}: ${FILE_ERRORS[fsError.code]}`);
      return 1;
    }
    if (err instanceof UserFacingError) {
      console.error(`blip2-bot ${name}: ${err.userMessage}`);
      return 1;
    }
    console.error(`blip2-bot ${name}: unexpected error`);
    console.error(err.stack ?? String(err));
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
