import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatDuration, TransferProgress } from '../../src/cli/progress.js';

function stream(isTTY: boolean, columns?: number) {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & { text: string };
  s.text = '';
  (s as unknown as PassThrough).on('data', (d: Buffer) => {
    s.text += d.toString();
  });
  Object.assign(s, { isTTY, columns });
  return s;
}

describe('TransferProgress', () => {
  it('reports bytes, rate over the window and ETA, per file and in total, resumed bytes counted as done', () => {
    let now = 0;
    const MB = 1024 * 1024;
    const p = new TransferProgress({
      totalBytes: 10 * MB,
      stream: stream(false),
      now: () => now,
      windowMs: 5000,
    });
    p.skipFile(2 * MB);
    p.startFile('model-00002-of-00002.safetensors', 8 * MB, 1 * MB);
    now = 2000;
    p.add(2 * MB);
    // 5 MB of 10 done; 2 MB transferred in 2 s → 1 MB/s; 5 MB left → 5 s (src/util/bytes.ts: binary units).
    expect(p.line()).toMatch(
      / 50% 5\.0 MB \/ 10 MB · 1\.0 MB\/s · ETA 5s · model-00002-of-00002\.safetensors 38% of 8\.0 MB$/,
    );
    // Nothing arrives for longer than the window: the rate falls to zero and the line says so.
    now = 9000;
    p.line();
    now = 15_000;
    expect(p.line()).toMatch(/0 bytes\/s · stalled/);
    p.stop();
  });

  it('redraws one line in place on a terminal, cut to its width, and prints lines elsewhere', async () => {
    const tty = stream(true, 40);
    const p = new TransferProgress({ totalBytes: 100, stream: tty, intervalMs: 10 });
    p.startFile('a-file-with-a-rather-long-name.safetensors', 100);
    p.add(10);
    await new Promise((r) => setTimeout(r, 60));
    p.note('a note');
    p.stop();
    const draws = tty.text.split('\r\x1b[2K').filter(Boolean);
    expect(draws.length).toBeGreaterThan(1);
    for (const d of draws) expect(d.replace('a note\n', '').length).toBeLessThanOrEqual(39);
    expect(tty.text).toContain('a note\n');

    const log = stream(false);
    const q = new TransferProgress({ totalBytes: 100, stream: log, intervalMs: 10 });
    q.startFile('f', 100);
    q.add(100);
    q.endFile();
    q.stop();
    expect(log.text).toMatch(/100% 100 bytes \/ 100 bytes .* done · f 100% of 100 bytes\n/);
  });

  it('formats durations', () => {
    expect(formatDuration(12.4)).toBe('12s');
    expect(formatDuration(245)).toBe('4m 05s');
    expect(formatDuration(3720)).toBe('1h 02m');
  });
});
