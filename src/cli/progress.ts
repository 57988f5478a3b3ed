/**
 * Terminal feedback for long steps: a progress bar or a spinner on a TTY, plain lines otherwise (CI logs).
 * Everything goes to stderr so `--json` output on stdout stays clean.
 */

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

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
      const filled = Math.round(f * this.width);
      const line = `[${'█'.repeat(filled)}${'░'.repeat(this.width - filled)}] ${(f * 100).toFixed(0).padStart(3)}% ${label}`;
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
