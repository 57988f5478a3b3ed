/**
 * The command line's length, checked before any command loads onnxruntime.
 *
 * onnxruntime-node's bundled telemetry reads /proc/self/cmdline and matches it with a recursive regular
 * expression when the first session is created: a command line of about 29,000 characters or more (one long
 * argument or many short ones) overflows the stack and the process dies with a segfault. Nothing we take as an
 * argument needs a fraction of that (the longest prompt the model takes is a few hundred tokens), so longer
 * command lines are refused with a clear message; long questions and prompts go through `--question-file`.
 */
import { readFileSync } from 'node:fs';
import { UserFacingError } from '../errors.js';

/** Well below the ~29,000 characters that crash, leaving room for node's own arguments and long paths. */
export const MAX_COMMAND_LINE_CHARS = 16_384;

/** Flags whose value is text a person wrote, so "too long" is about the text, not about the command line. */
const TEXT_FLAGS: Record<string, { what: string; hint: string }> = {
  '--question': {
    what: 'question',
    hint: 'Put it in a file and pass --question-file <file>, or pipe it in with --question-file -.',
  },
  '--prompt': { what: 'prompt', hint: 'Please shorten it.' },
  '--input-ids': { what: 'list of input ids', hint: 'Please shorten it.' },
};

/** The process's own command line as the kernel shows it, else node's view of it. */
function commandLineChars(): number {
  try {
    return readFileSync('/proc/self/cmdline').byteLength;
  } catch {
    return [process.argv0, ...process.execArgv, ...process.argv].reduce((n, a) => n + a.length + 1, 0);
  }
}

/** Throws a UserFacingError naming the longest argument when the command line is too long. */
export function checkCommandLine(
  command: string,
  args: readonly string[],
  total: number = commandLineChars(),
): void {
  if (total <= MAX_COMMAND_LINE_CHARS) return;
  let longest = 0;
  for (let i = 1; i < args.length; i++) if (args[i]!.length > args[longest]!.length) longest = i;
  const arg = args[longest] ?? '';
  const eq = arg.indexOf('=');
  const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : args[longest - 1];
  const text = flag ? TEXT_FLAGS[flag] : undefined;
  const limit = MAX_COMMAND_LINE_CHARS.toLocaleString('en-US');
  const chars = total.toLocaleString('en-US');
  if (text) {
    throw new UserFacingError(
      'too_long',
      `Your ${text.what} is too long for the command line (${chars} characters in all; at most ${limit}). ${text.hint}`,
    );
  }
  throw new UserFacingError(
    'command_line_too_long',
    `the command line is too long (${chars} characters; at most ${limit}${command ? ` for blip2-bot ${command}` : ''}); ` +
      'pass long text through a file instead',
  );
}
