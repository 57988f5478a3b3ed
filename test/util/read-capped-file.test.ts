import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileImage } from '../../adapters/local/adapter.js';
import { readImageFile } from '../../src/engine/image-file.js';
import { formatBytes } from '../../src/util/bytes.js';
import { FileReadError, readCappedFile } from '../../src/util/read-capped-file.js';

const MB = 1024 * 1024;

async function problem(promise: Promise<unknown>): Promise<{ problem: string; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FileReadError);
  const e = err as FileReadError;
  return { problem: e.problem, message: e.userMessage };
}

describe('readCappedFile: type and size are checked before reading, the read stops at the cap', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-read-capped-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('reads a small file whole', async () => {
    const file = join(work, 'small.bin');
    writeFileSync(file, Buffer.from([1, 2, 3, 4]));
    expect([...(await readCappedFile(file, { maxBytes: 4 }))]).toEqual([1, 2, 3, 4]);
  });

  it('refuses a sparse 3 GB file by its size, without allocating it', async () => {
    const huge = join(work, 'huge.png');
    writeFileSync(huge, '');
    truncateSync(huge, 3 * 1024 ** 3);
    const before = process.memoryUsage().rss;
    const r = await problem(readImageFile(huge));
    expect(r.problem).toBe('too_large');
    expect(r.message).toBe(
      `the image ${huge} is 3.0 GB, larger than the 20 MB I accept; please use a smaller one`,
    );
    expect(process.memoryUsage().rss - before).toBeLessThan(100 * MB);
  });

  it('refuses devices, directories, FIFOs and missing files with one line each', async () => {
    expect(await problem(readImageFile('/dev/zero'))).toEqual({
      problem: 'not_a_file',
      message: 'the image /dev/zero is not a regular file (a device, pipe or socket); please give a file',
    });
    expect((await problem(readImageFile(work))).message).toMatch(/is a directory, not a file$/);
    const fifo = join(work, 'pipe');
    execFileSync('mkfifo', [fifo]);
    // Opening a FIFO for reading waits for a writer: the check must come first, or this test hangs.
    expect((await problem(readImageFile(fifo))).problem).toBe('not_a_file');
    expect(await problem(readImageFile(join(work, 'nope.png')))).toEqual({
      problem: 'not_found',
      message: `cannot read the image ${join(work, 'nope.png')}: no such file or directory`,
    });
  });

  it('stops one byte past the cap when a file is larger than its size said (/proc files say 0)', async () => {
    const r = await problem(readCappedFile('/proc/self/status', { maxBytes: 16, what: 'file' }));
    expect(r.problem).toBe('too_large');
    expect(r.message).toMatch(/is larger than the 16 bytes I accept/);
  });

  it("the terminal chat's pictures use the same checks", async () => {
    await expect(fileImage('/dev/zero')).rejects.toThrow(/not a regular file/);
    const file = join(work, 'pic.png');
    writeFileSync(file, Buffer.alloc(2000, 7));
    const image = await fileImage(file);
    expect(image.size).toBe(2000);
    await expect(image.download(1000)).rejects.toThrow(/larger than the 1000 bytes I accept/);
    expect((await image.download(5000)).byteLength).toBe(2000);
  });

  it('formats sizes with one formatter', () => {
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(1536)).toBe('2 KB');
    expect(formatBytes(1.5 * MB)).toBe('1.5 MB');
    expect(formatBytes(20 * MB)).toBe('20 MB');
    expect(formatBytes(3 * 1024 * MB)).toBe('3.0 GB');
  });
});
