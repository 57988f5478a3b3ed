/** The OpenAI-compatible endpoint, driven by the official `openai` package against the real server. */
import { lookup } from 'node:dns/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPrivateAddress } from '../../adapters/web/images.js';
import { type EngineFixture, openTestEngine, RecordingEngine } from '../chat/engine-fixture.js';
import { pngBytes } from '../chat/images.js';
import { type Json, startWebServer, type WebServer } from './harness.js';

const KEY = 'openai-test-key-0123456789';

let fixture: EngineFixture;
let engine: RecordingEngine;
let web: WebServer;
let client: OpenAI;
let picture: string;

beforeAll(async () => {
  fixture = await openTestEngine();
  engine = new RecordingEngine(fixture.engine.inner);
  web = await startWebServer(engine, {
    config: { apiKey: KEY, imageUrlHosts: ['localhost', 'images.test'] },
    // images.test is listed, and resolves to a private address: it must be refused like localhost.
    resolver: async (host) => {
      if (host === 'images.test') return [{ address: '10.1.2.3', family: 4 }];
      return lookup(host, { all: true });
    },
  });
  client = new OpenAI({ baseURL: `${web.url}/v1`, apiKey: KEY, maxRetries: 0 });
  picture = `data:image/png;base64,${Buffer.from(await pngBytes(51)).toString('base64')}`;
});

afterAll(async () => {
  await web?.stop();
  await fixture?.close();
});

type Part = OpenAI.Chat.Completions.ChatCompletionContentPart;
const withImage = (text: string, url = picture): OpenAI.Chat.Completions.ChatCompletionMessageParam => ({
  role: 'user',
  content: [{ type: 'text', text } as Part, { type: 'image_url', image_url: { url } } as Part],
});

describe('OpenAI-compatible endpoint', () => {
  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([engine.modelId]);
  });

  it('answers a question about a data: URL picture, with usage; a follow-up resending it skips the vision encoder', async () => {
    const first = await client.chat.completions.create({
      model: 'blip2',
      messages: [withImage('what is in the picture?')],
      max_tokens: 5,
      temperature: 0,
    });
    const result = engine.results.at(-1)!;
    expect(first.object).toBe('chat.completion');
    expect(first.model).toBe(engine.modelId);
    expect(first.choices).toHaveLength(1);
    expect(first.choices[0]!.message).toMatchObject({ role: 'assistant', content: result.text.trim() });
    expect(first.usage).toEqual({
      prompt_tokens: result.promptTokens,
      completion_tokens: result.ids.length,
      total_tokens: result.promptTokens + result.ids.length,
    });
    expect(first.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(engine.requests.at(-1)).toMatchObject({
      question: 'what is in the picture?',
      history: [],
      options: { maxNewTokens: 5, numBeams: 1, doSample: false },
    });
    const firstExtra = (first as Json).blip2;
    expect(firstExtra.demo).toBe(true);

    const answer = first.choices[0]!.message.content ?? '';
    const second = await client.chat.completions.create({
      model: 'blip2',
      messages: [
        withImage('what is in the picture?'),
        { role: 'assistant', content: answer },
        { role: 'user', content: 'and what colour is it?' },
      ],
      max_tokens: 5,
      temperature: 0,
    });
    const extra = (second as Json).blip2;
    expect(extra.imageCached).toBe(true);
    expect(extra.timings.visionMs).toBe(0);
    expect(engine.requests.at(-1)).toMatchObject({
      question: 'and what colour is it?',
      history: [{ question: 'what is in the picture?', answer }],
    });
    // Stateless: nothing of the request stays in the conversation store.
    const keys: string[] = [];
    for await (const [key] of web.conversations.iterator!(undefined)) keys.push(String(key));
    expect(keys.filter((k) => k.includes('openai-'))).toEqual([]);
  });

  it('streams OpenAI chunks, with usage when asked', async () => {
    const stream = await client.chat.completions.create({
      model: 'blip2',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: picture } }] }],
      max_tokens: 6,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const result = engine.results.at(-1)!;
    expect(engine.requests.at(-1)).toMatchObject({ task: 'caption' });
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(result.text.trim());
    const contentChunks = chunks.filter((c) => c.choices[0]?.delta.content);
    if (result.ids.length > 2) expect(contentChunks.length).toBeGreaterThan(1);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toMatch(
      /^(stop|length)$/,
    );
    expect(chunks.at(-1)!.usage).toEqual({
      prompt_tokens: result.promptTokens,
      completion_tokens: result.ids.length,
      total_tokens: result.promptTokens + result.ids.length,
    });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it('samples with temperature and top_p, reproducibly with a seed', async () => {
    const ask = () =>
      client.chat.completions.create({
        model: 'blip2',
        messages: [withImage('what is it?')],
        max_tokens: 4,
        temperature: 0.7,
        top_p: 0.9,
        seed: 5,
      });
    const a = await ask();
    expect(engine.requests.at(-1)?.options).toMatchObject({
      doSample: true,
      temperature: 0.7,
      topP: 0.9,
      seed: 5,
    });
    const b = await ask();
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
  });

  it('answers bad requests with OpenAI-shaped errors and fitting statuses', async () => {
    await expect(
      client.chat.completions.create({ model: 'blip2', messages: [withImage('hi')], n: 2 }),
    ).rejects.toMatchObject({ status: 400, code: 'unsupported_value' });
    await expect(
      client.chat.completions.create({
        model: 'blip2',
        messages: [{ role: 'user', content: 'no picture here' }],
      }),
    ).rejects.toMatchObject({ status: 400, code: 'no_picture' });
    const pdf = `data:application/pdf;base64,${Buffer.from('%PDF-1.4 not a picture').toString('base64')}`;
    const refused = await client.chat.completions
      .create({ model: 'blip2', messages: [withImage('what is it?', pdf)] })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    expect(refused).toMatchObject({
      status: 415,
      code: 'image_unsupported_type',
      type: 'invalid_request_error',
    });
    expect((refused as Error).message).toContain('is not a picture');
    const wrongKey = new OpenAI({ baseURL: `${web.url}/v1`, apiKey: 'wrong-key-0123456789', maxRetries: 0 });
    await expect(wrongKey.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('fetches remote image URLs only from listed hosts, and never from private addresses', async () => {
    const attempt = (url: string) =>
      client.chat.completions.create({ model: 'blip2', messages: [withImage('what?', url)] }).catch((e) => e);
    const unlisted = await attempt('https://example.com/cat.png');
    expect(unlisted).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
    expect(unlisted.message).toContain('WEB_IMAGE_URL_HOSTS');
    // Listed, but localhost resolves (through the system's DNS) to a loopback address.
    const loopback = await attempt(`http://localhost:${web.adapter.port}/api/v1/health`);
    expect(loopback).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
    expect(loopback.message).toContain('private or local address');
    const privateHost = await attempt('https://images.test/cat.png');
    expect(privateHost).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
    const literal = await attempt('http://127.0.0.1/cat.png');
    expect(literal).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
    const file = await attempt('file:///etc/passwd');
    expect(file).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
  });

  it('knows which addresses are private', () => {
    for (const a of [
      '127.0.0.1',
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
    ]) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['::1', '::', 'fc00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:7f00:1', 'ff02::1']) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '93.184.216.34', '2606:4700:4700::1111'])
      expect(isPrivateAddress(a), a).toBe(false);
  });
});

describe('OpenAI-compatible endpoint: remote image URLs', () => {
  let pictures: Server;
  let port: number;
  let remote: WebServer;
  let remoteClient: OpenAI;
  const hosts: string[] = [];

  beforeAll(async () => {
    const png = await pngBytes(52);
    pictures = createServer((req, res) => {
      hosts.push(req.headers.host ?? '');
      const at = (host: string, path: string) => `http://${host}:${port}${path}`;
      const routes: Record<string, () => void> = {
        '/cat.png': () => res.writeHead(200, { 'content-type': 'image/png' }).end(png),
        '/big.png': () =>
          res.writeHead(200, { 'content-type': 'image/png', 'content-length': '900000000' }).end(),
        '/page': () => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>'),
        '/hop': () => res.writeHead(302, { location: at('pics.test', '/cat.png') }).end(),
        '/escape': () => res.writeHead(302, { location: at('internal.test', '/cat.png') }).end(),
        '/elsewhere': () => res.writeHead(302, { location: 'http://unlisted.test/cat.png' }).end(),
      };
      (routes[req.url ?? ''] ?? (() => res.writeHead(404).end()))();
    });
    await new Promise<void>((resolve) => pictures.listen(0, '127.0.0.1', resolve));
    port = (pictures.address() as AddressInfo).port;
    remote = await startWebServer(engine, {
      config: { imageUrlHosts: ['pics.test', 'internal.test'] },
      resolver: async (host) => {
        if (host === 'pics.test') return [{ address: '127.0.0.1', family: 4 }];
        if (host === 'internal.test') return [{ address: '10.0.0.9', family: 4 }];
        throw new Error(`no such host ${host}`);
      },
      // The picture server of this test lives on 127.0.0.1; every other private address stays refused.
      isBlockedAddress: (address) => address !== '127.0.0.1' && isPrivateAddress(address),
    });
    remoteClient = new OpenAI({ baseURL: `${remote.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterAll(async () => {
    await remote?.stop();
    await new Promise((resolve) => pictures?.close(resolve));
  });

  const askAbout = (path: string, host = 'pics.test') =>
    remoteClient.chat.completions
      .create({
        model: 'blip2',
        max_tokens: 3,
        messages: [withImage('what is it?', `http://${host}:${port}${path}`)],
      })
      .catch((e: unknown) => e as Json);

  it('downloads a picture from a listed host, connecting to the address it vetted', async () => {
    const first = (await askAbout('/cat.png')) as OpenAI.Chat.Completions.ChatCompletion;
    expect(first.choices[0]!.message.content).toBe(engine.results.at(-1)!.text.trim());
    expect(hosts.at(-1)).toBe(`pics.test:${port}`);
    expect((first as Json).blip2.imageCached).toBe(false);
    const again = await askAbout('/hop');
    expect(again.blip2.imageCached).toBe(true);
  });

  it('refuses redirects to private or unlisted hosts, too-large bodies and web pages', async () => {
    expect(await askAbout('/escape')).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
    expect(await askAbout('/elsewhere')).toMatchObject({ status: 400, code: 'image_url_not_allowed' });
    expect(await askAbout('/cat.png', 'internal.test')).toMatchObject({
      status: 400,
      code: 'image_url_not_allowed',
    });
    expect(await askAbout('/big.png')).toMatchObject({ status: 413, code: 'image_too_large' });
    expect(await askAbout('/page')).toMatchObject({ status: 415, code: 'image_unsupported_type' });
    expect(await askAbout('/missing.png')).toMatchObject({ status: 502, code: 'image_download_failed' });
  });
});
