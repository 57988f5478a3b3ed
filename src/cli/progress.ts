/**
 * Terminal feedback for long steps: a progress bar or a spinner on a TTY, plain lines otherwise (CI logs).
 * Everything goes to stderr so `--json` output on stdout stays clean.
 */

import { formatBytes } from '../util/bytes.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

function bar(fraction: number, width: number): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

function percent(fraction: number): string {
  return `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(0).padStart(3)}%`;
}

export class ProgressBar {
  private lastLine = '';
  private lastPlain = -1;
  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly width = 30,
  ) {}

  update(fraction: number, label: string): void {
    const f = Math.max(0, Math.min(1, fraction));
    if (this.stream.isTTY) {
      const line = `${bar(f, this.width)} ${percent(f)} ${label}`;
      if (line !== this.lastLine) {
        this.stream.write(`\r\x1b[2K${line}`);
        this.lastLine = line;
      }
    } else {
      const decile = Math.floor(f * 10);
      if (decile !== this.lastPlain) {
        this.stream.write(`${(f * 100).toFixed(0)}% ${label}\n`);
        this.lastPlain = decile;
      }
    }
  }

  done(): void {
    if (this.stream.isTTY && this.lastLine) this.stream.write('\r\x1b[2K');
    this.lastLine = '';
  }
}

/** Runs `task` with a spinner labelled `label` on a TTY; prints the label once elsewhere. */
export async function withSpinner<T>(
  label: string,
  task: () => Promise<T>,
  stream: NodeJS.WriteStream = process.stderr,
): Promise<T> {
  if (!stream.isTTY) {
    stream.write(`${label}…\n`);
    return task();
  }
  let i = 0;
  const started = Date.now();
  const timer = setInterval(() => {
    stream.write(
      `\r\x1b[2K${FRAMES[i++ % FRAMES.length]} ${label} ${((Date.now() - started) / 1000).toFixed(1)}s`,
    );
  }, 100);
  try {
    return await task();
  } finally {
    clearInterval(timer);
    stream.write('\r\x1b[2K');
  }
}

/** "1h 02m", "4m 05s", "12s" */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

export interface TransferProgressOptions {
  /** Bytes of the whole transfer, those already on disk included. */
  totalBytes: number;
  stream?: NodeJS.WriteStream;
  /** Redraw period: a timer, so a stalled transfer still shows its falling rate (default 200 ms on a TTY, 1 s in logs). */
  intervalMs?: number;
  /** Rate window: the rate is measured over the last this many milliseconds (default 5 s). */
  windowMs?: number;
  now?: () => number;
}

/**
 * Download progress: per file and in total, with bytes, rate and ETA, redrawn on a timer rather than on each
 * chunk (a slow or stalled server keeps the display moving; a fast one does not flood it). On a TTY one line is
 * redrawn in place; elsewhere (CI logs, a pipe) a line is printed each interval and when a file completes.
 */
export class TransferProgress {
  private readonly stream: NodeJS.WriteStream;
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly timer: NodeJS.Timeout;
  private doneBytes = 0;
  private file: { name: string; size: number; done: number } | undefined;
  /** (time, bytes transferred so far) samples inside the rate window. */
  private samples: Array<[number, number]> = [];
  private transferred = 0;
  private drawn = false;

  constructor(private readonly options: TransferProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.now = options.now ?? Date.now;
    this.windowMs = options.windowMs ?? 5000;
    const interval = options.intervalMs ?? (this.stream.isTTY ? 200 : 1000);
    this.timer = setInterval(() => this.draw(), interval);
    this.timer.unref();
    this.samples.push([this.now(), 0]);
  }

  /** Starts a file of which `have` bytes are already on disk (a resumed download). */
  startFile(name: string, size: number, have = 0): void {
    this.file = { name, size, done: have };
    this.doneBytes += have;
  }

  /** Counts a file that was already complete. */
  skipFile(size: number): void {
    this.doneBytes += size;
  }

  add(bytes: number): void {
    this.doneBytes += bytes;
    this.transferred += bytes;
    if (this.file) this.file.done += bytes;
  }

  /** The file's partial bytes were dropped (the server ignored the Range request). */
  restartFile(dropped: number): void {
    this.doneBytes -= dropped;
    if (this.file) this.file.done = Math.max(0, this.file.done - dropped);
  }

  endFile(): void {
    if (this.file && !this.stream.isTTY) this.stream.write(`${this.line()}\n`);
    this.file = undefined;
  }

  /** Bytes per second over the rate window. */
  rate(): number {
    const now = this.now();
    this.samples.push([now, this.transferred]);
    while (this.samples.length > 2 && now - this.samples[1]![0] >= this.windowMs) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    const seconds = (now - t0) / 1000;
    return seconds > 0 ? (this.transferred - b0) / seconds : 0;
  }

  line(): string {
    const total = this.options.totalBytes;
    const rate = this.rate();
    const remaining = Math.max(0, total - this.doneBytes);
    const eta = remaining === 0 ? 'done' : rate > 0 ? `ETA ${formatDuration(remaining / rate)}` : 'stalled';
    const parts = [
      `${bar(total > 0 ? this.doneBytes / total : 1, 20)} ${percent(total > 0 ? this.doneBytes / total : 1)} ${formatBytes(this.doneBytes)} / ${formatBytes(total)}`,
      `${formatBytes(rate)}/s`,
      eta,
    ];
    if (this.file) {
      const f = this.file;
      parts.push(`${f.name} ${percent(f.size > 0 ? f.done / f.size : 1).trim()} of ${formatBytes(f.size)}`);
    }
    return parts.join(' · ');
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.stream.isTTY && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  /** Prints a note (a retry, a resume) without tearing the progress line. */
  note(text: string): void {
    if (this.stream.isTTY && this.drawn) this.stream.write('\r\x1b[2K');
    this.stream.write(`${text}\n`);
    this.drawn = false;
  }

  private draw(): void {
    if (!this.file) return;
    if (this.stream.isTTY) {
      // A line wider than the terminal wraps, and `\r` then redraws only its last row.
      const width = this.stream.columns ? this.stream.columns - 1 : Number.POSITIVE_INFINITY;
      this.stream.write(`\r\x1b[2K${this.line().slice(0, width)}`);
      this.drawn = true;
    } else {
      this.stream.write(`${this.line()}\n`);
    }
  }
}
