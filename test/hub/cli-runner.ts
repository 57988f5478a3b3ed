/** Runs the real `blip2-bot` entry point as a child process (asynchronously, so an in-process emulator can answer). */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/shared.js';

const BIN = join(ROOT, 'bin', 'blip2-bot.js');

export interface CliRun {
  child: ChildProcess;
  /** Resolves when the process exits. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** stderr lines with the time (ms since start) each arrived. */
  lines: Array<{ at: number; text: string }>;
}

export function runCli(args: string[], options: { cwd: string; env?: Record<string, string> }): CliRun {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // The tests decide what the Hub variables are; never inherit a developer's token.
    if (v !== undefined && !k.startsWith('HF_')) env[k] = v;
  }
  Object.assign(env, options.env);
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: CliRun['lines'] = [];
  let stdout = '';
  let stderr = '';
  let pending = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    const text = d.toString();
    stderr += text;
    pending += text;
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const p of parts) lines.push({ at: Date.now() - started, text: p });
  });
  const done = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, lines };
}
