import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAllowed } from '../../src/chat/allow-list.js';
import { MessageDeduper } from '../../src/chat/dedupe.js';
import { checkDeclared, DownloadError, downloadWithCap } from '../../src/chat/download.js';
import { RateLimiter } from '../../src/chat/rate-limit.js';
import { splitMessage } from '../../src/chat/split.js';
import type { ChatMessage } from '../../src/chat/types.js';
import { ImageError } from '../../src/engine/errors.js';

describe('splitMessage', () => {
  it('keeps short text whole and never exceeds the limit', () => {
    expect(splitMessage('hello', 10)).toEqual(['hello']);
    const text = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');
    const chunks = splitMessage(text, 100);
    expect(chunks.every((c) => c.length <= 100)).toBe(true);
    expect(chunks.join(' ')).toBe(text);
  });

  it('prefers paragraph, then line, then sentence boundaries', () => {
    const para = `${'a'.repeat(60)}\n\n${'b'.repeat(60)}`;
    expect(splitMessage(para, 100)).toEqual(['a'.repeat(60), 'b'.repeat(60)]);
    const sentences = `${'x'.repeat(50)}. ${'y'.repeat(60)}`;
    expect(splitMessage(sentences, 100)).toEqual([`${'x'.repeat(50)}.`, 'y'.repeat(60)]);
  });

  it('cuts words longer than the limit, and never splits a surrogate pair', () => {
    expect(splitMessage('z'.repeat(250), 100)).toEqual(['z'.repeat(100), 'z'.repeat(100), 'z'.repeat(50)]);
    const emoji = '😀'.repeat(60);
    const chunks = splitMessage(emoji, 11);
    expect(chunks.join('')).toBe(emoji);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(11);
      expect(chunk).toBe(String.fromCodePoint(...[...chunk].map((c) => c.codePointAt(0)!)));
    }
  });
});

describe('RateLimiter', () => {
  it('allows N per rolling minute per key and says how long to wait', () => {
    let now = 0;
    const limiter = new RateLimiter(2, () => now);
    expect(limiter.take('a')).toBe(0);
    now = 10_000;
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(50_000);
    expect(limiter.take('b')).toBe(0);
    now = 60_000;
    expect(limiter.take('a')).toBe(0);
    expect(new RateLimiter(0).take('a')).toBe(0);
  });
});

describe('isAllowed', () => {
  const base: ChatMessage = {
    platform: 'discord',
    conversation: 'c',
    user: 'u1',
    server: 's1',
    channel: 'ch1',
    text: '',
    images: [],
    addressed: true,
    messageId: 'm',
  };
  it('allows everyone with empty lists and requires every non-empty list to match', () => {
    const open = { servers: [], channels: [], users: [], mode: 'ignore' as const };
    expect(isAllowed(base, open)).toBe(true);
    expect(isAllowed(base, { ...open, servers: ['s1'], users: ['u1'] })).toBe(true);
    expect(isAllowed(base, { ...open, servers: ['s1'], users: ['u2'] })).toBe(false);
    expect(isAllowed(base, { ...open, channels: ['ch2'] })).toBe(false);
    const { server: _s, ...dm } = base;
    expect(isAllowed(dm, { ...open, servers: ['s1'] })).toBe(false);
  });
});

describe('MessageDeduper', () => {
  it('claims an id once, also across instances sharing a store', async () => {
    const store = new Keyv();
    const first = new MessageDeduper(store);
    expect(await first.claim('x')).toBe(true);
    expect(await first.claim('x')).toBe(false);
    expect(await new MessageDeduper(store).claim('x')).toBe(false);
    expect(await new MessageDeduper(store).claim('y')).toBe(true);
  });
});

describe('attachment checks and capped downloads', () => {
  let server: Server;
  let base: string;
  const big = new Uint8Array(50_000).fill(7);

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/ok') res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.from(big));
      else if (req.url === '/chunked') {
        // No Content-Length: the cap must hold while streaming.
        res.writeHead(200, { 'content-type': 'image/png' });
        for (let i = 0; i < 10; i++) res.write(Buffer.from(big.subarray(0, 5000)));
        res.end();
      } else if (req.url === '/login')
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html></html>');
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('checks the declared type and size before any download', () => {
    const image = (contentType: string | undefined, size: number | undefined, name = 'f.png') => ({
      name,
      ...(contentType ? { contentType } : {}),
      ...(size !== undefined ? { size } : {}),
      download: async () => new Uint8Array(),
    });
    expect(checkDeclared(image('image/png', 10), 100)).toBeUndefined();
    expect(checkDeclared(image(undefined, undefined, 'photo'), 100)).toBeUndefined();
    expect(checkDeclared(image('application/pdf', 10), 100)?.code).toBe('unsupported_type');
    expect(checkDeclared(image(undefined, 10, 'report.pdf'), 100)?.code).toBe('unsupported_type');
    expect(checkDeclared(image('image/jpeg', 101), 100)?.code).toBe('too_large');
  });

  it('downloads within the cap and refuses more, by header or while streaming', async () => {
    expect((await downloadWithCap(`${base}/ok`, { maxBytes: 50_000 })).byteLength).toBe(50_000);
    await expect(downloadWithCap(`${base}/ok`, { maxBytes: 49_999 })).rejects.toMatchObject({
      code: 'too_large',
    });
    expect((await downloadWithCap(`${base}/chunked`, { maxBytes: 50_000 })).byteLength).toBe(50_000);
    const streamed = downloadWithCap(`${base}/chunked`, { maxBytes: 20_000, name: 'x.png' });
    await expect(streamed).rejects.toBeInstanceOf(ImageError);
    await expect(downloadWithCap(`${base}/login`, { maxBytes: 1000 })).rejects.toMatchObject({
      code: 'unsupported_type',
    });
    await expect(downloadWithCap(`${base}/missing`, { maxBytes: 1000 })).rejects.toBeInstanceOf(
      DownloadError,
    );
    await expect(downloadWithCap('http://127.0.0.1:1/none', { maxBytes: 1000 })).rejects.toBeInstanceOf(
      DownloadError,
    );
  });
});
