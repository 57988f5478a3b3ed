import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages } from '../../src/chat/messages.js';
import { type EngineFixture, openTestEngine, RecordingEngine } from '../chat/engine-fixture.js';
import { corruptJpegBytes, pngBytes } from '../chat/images.js';
import {
  GatedEngine,
  type Json,
  json,
  readEvents,
  startWebServer,
  until,
  type WebServer,
} from './harness.js';

let fixture: EngineFixture;
let web: WebServer;
let engine: RecordingEngine;

beforeAll(async () => {
  fixture = await openTestEngine();
  engine = new RecordingEngine(fixture.engine.inner);
  web = await startWebServer(engine);
});

afterAll(async () => {
  await web?.stop();
  await fixture?.close();
});

function form(bytes: Uint8Array, name: string, type: string, fields: Record<string, string> = {}): FormData {
  const body = new FormData();
  body.append('image', new Blob([bytes], { type }), name);
  for (const [k, v] of Object.entries(fields)) body.append(k, v);
  return body;
}

async function post(url: string, body: FormData | object, headers: Record<string, string> = {}) {
  const init: RequestInit =
    body instanceof FormData
      ? { method: 'POST', body, headers }
      : {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json', ...headers },
        };
  const response = await fetch(url, init);
  return { status: response.status, headers: response.headers, body: (await response.json()) as Json };
}

/** A raw request, so a test can send headers that fetch would not (a huge Content-Length without a body). */
function rawRequest(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(head));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString();
    });
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
}

describe('web API: conversations', () => {
  it('captions an uploaded picture, answers a follow-up from the cache, and gives the thread back', async () => {
    const bytes = await pngBytes(31);
    const first = await post(`${web.url}/api/v1/conversations`, form(bytes, 'cat.png', 'image/png'));
    expect(first.status).toBe(200);
    expect(first.body.demo).toBe(true);
    expect(first.body.conversation).toMatch(/^[0-9a-f-]{36}$/);
    const caption = engine.results.at(-1)!;
    expect(first.body.answer).toMatchObject({
      text: caption.text.trim(),
      question: null,
      imageCached: false,
      notes: [],
    });
    expect(first.body.answer.timings.visionMs).toBeGreaterThan(0);
    expect(first.body.answer.timings.totalMs).toBeGreaterThanOrEqual(first.body.answer.timings.visionMs);
    expect(engine.requests.at(-1)).toMatchObject({ task: 'caption' });

    const id = first.body.conversation;
    const encodes = engine.encodeCalls;
    const second = await post(`${web.url}/api/v1/conversations/${id}/messages`, {
      question: 'what colour is it?',
    });
    expect(second.status).toBe(200);
    expect(second.body.answer).toMatchObject({ question: 'what colour is it?', imageCached: true });
    expect(second.body.answer.timings.visionMs).toBe(0);
    expect(engine.encodeCalls).toBe(encodes);
    expect(engine.requests.at(-1)).toMatchObject({ question: 'what colour is it?', history: [] });

    const third = await post(`${web.url}/api/v1/conversations/${id}/messages`, { question: 'and now?' });
    expect(engine.requests.at(-1)?.history).toEqual([
      { question: 'what colour is it?', answer: engine.results.at(-2)!.text },
    ]);

    const thread = await json(fetch(`${web.url}/api/v1/conversations/${id}`));
    expect(thread).toMatchObject({ conversation: id, imageName: 'cat.png', hasPicture: true, demo: true });
    expect(thread.turns.map((t: { question: string | null }) => t.question)).toEqual([
      null,
      'what colour is it?',
      'and now?',
    ]);
    expect(thread.turns[2].answer).toBe(third.body.answer.text);
    expect(thread.turns[0].imageCached).toBe(false);
  });

  it('takes JSON with base64 and a question, and per-request generation settings', async () => {
    const bytes = await pngBytes(32);
    const r = await post(`${web.url}/api/v1/conversations`, {
      image: Buffer.from(bytes).toString('base64'),
      imageName: 'dog.png',
      question: 'what is this?',
      options: { numBeams: 2, maxNewTokens: 3 },
    });
    expect(r.status).toBe(200);
    expect(r.body.answer.question).toBe('what is this?');
    expect(engine.requests.at(-1)).toMatchObject({
      question: 'what is this?',
      options: { numBeams: 2, maxNewTokens: 3 },
    });
    expect(engine.results.at(-1)!.ids.length).toBeLessThanOrEqual(3);
    // A data: URL works in the same field.
    const again = await post(`${web.url}/api/v1/conversations`, {
      image: `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`,
    });
    expect(again.status).toBe(200);
    expect(again.body.answer.imageCached).toBe(true);
  });

  it('streams the answer as events when asked to', async () => {
    const response = await fetch(`${web.url}/api/v1/conversations`, {
      method: 'POST',
      body: form(await pngBytes(33), 'a.png', 'image/png'),
      headers: { accept: 'text/event-stream' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = await readEvents(response);
    const tokens = events.filter((e) => e.event === 'token');
    expect(tokens.length).toBeGreaterThan(0);
    const answer = events.at(-1)!;
    expect(answer.event).toBe('answer');
    expect(answer.data.answer.text).toBe(engine.results.at(-1)!.text.trim());
    // The thread's id comes first, with the headers: a client whose stream breaks can still read it back.
    expect(response.headers.get('x-conversation-id')).toBe(answer.data.conversation);
  });

  it('reports health and describes itself with OpenAPI', async () => {
    const health = await json(fetch(`${web.url}/api/v1/health`));
    expect(health).toEqual({
      status: 'ok',
      model: engine.modelId,
      demo: true,
      queue: { waiting: 0, active: 0 },
    });
    const doc = await json(fetch(`${web.url}/api/v1/openapi.json`));
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/conversations',
        '/api/v1/conversations/{id}/messages',
        '/api/v1/conversations/{id}',
        '/api/v1/health',
        '/v1/chat/completions',
        '/v1/models',
      ]),
    );
  });
});

describe('web API: errors', () => {
  it('415 with the polite refusal for a PDF, whatever it claims to be', async () => {
    const pdf = new TextEncoder().encode('%PDF-1.4\n1 0 obj\n<<>>\nendobj\n');
    const declared = await post(`${web.url}/api/v1/conversations`, form(pdf, 'doc.pdf', 'application/pdf'));
    expect(declared.status).toBe(415);
    expect(declared.body.error).toEqual({
      code: 'image_unsupported_type',
      message: '"doc.pdf" (application/pdf) is not a picture. Please send a PNG, JPEG, WebP or GIF image.',
    });
    const disguised = await post(
      `${web.url}/api/v1/conversations`,
      form(pdf, 'photo', 'application/octet-stream'),
    );
    expect(disguised.status).toBe(415);
    expect(disguised.body.error.message).toMatch(/PDF/);
  });

  it('400 for a damaged picture, bad JSON, bad options and a question too long', async () => {
    const corrupt = await post(
      `${web.url}/api/v1/conversations`,
      form(await corruptJpegBytes(), 'a.jpg', 'image/jpeg'),
    );
    expect(corrupt.status).toBe(400);
    expect(corrupt.body.error.code).toBe('image_corrupt');
    expect(corrupt.body.error.message).toBe(
      "Sorry, I couldn't read that image; the file seems to be damaged. Could you send it again?",
    );
    const badJson = await fetch(`${web.url}/api/v1/conversations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"image": ',
    });
    expect(badJson.status).toBe(400);
    expect((await json(badJson)).error).toEqual({
      code: 'invalid_json',
      message: 'The request body is not valid JSON.',
    });
    const image = Buffer.from(await pngBytes(34)).toString('base64');
    const badOptions = await post(`${web.url}/api/v1/conversations`, { image, options: { beams: 3 } });
    expect(badOptions.status).toBe(400);
    expect(badOptions.body.error.code).toBe('invalid_options');
    const outOfRange = await post(`${web.url}/api/v1/conversations`, { image, options: { numBeams: 0 } });
    expect(outOfRange.status).toBe(400);
    expect(outOfRange.body.error.code).toBe('invalid_input');
    const long = await post(`${web.url}/api/v1/conversations`, { image, question: 'x'.repeat(1001) });
    expect(long.status).toBe(400);
    expect(long.body.error).toEqual({ code: 'question_too_long', message: messages.questionTooLong(1000) });
    const noPicture = await post(`${web.url}/api/v1/conversations`, { question: 'hi' });
    expect(noPicture.status).toBe(400);
    expect(noPicture.body.error.code).toBe('no_picture');
    const text = await fetch(`${web.url}/api/v1/conversations`, { method: 'POST', body: 'hello' });
    expect(text.status).toBe(415);
  });

  it('404 for an unknown conversation, route or file; nothing on disk is reachable', async () => {
    const follow = await post(`${web.url}/api/v1/conversations/does-not-exist/messages`, { question: 'hi' });
    expect(follow.status).toBe(404);
    expect(follow.body.error.code).toBe('conversation_not_found');
    expect((await fetch(`${web.url}/api/v1/conversations/nope`)).status).toBe(404);
    expect((await fetch(`${web.url}/api/v1/nothing`)).status).toBe(404);
    for (const path of [
      '/package.json',
      '/static/app.js',
      '/..%2f..%2fpackage.json',
      '/.env',
      '/index.html',
    ]) {
      const response = await fetch(`${web.url}${path}`);
      expect(response.status, path).toBe(404);
    }
    const raw = await rawRequest(
      web.adapter.port,
      'GET /../../package.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
    );
    expect(raw).toMatch(/^HTTP\/1\.1 404/);
    expect(raw).not.toContain('"name": "blip2-bot"');
    expect((await fetch(`${web.url}/`)).headers.get('content-type')).toContain('text/html');
    expect((await fetch(`${web.url}/api/v1/conversations`)).status).toBe(405);
  });

  it('413 before reading a body that declares too much, and as soon as a streamed one passes the cap', async () => {
    const small = await startWebServer(engine, { settings: { maxImageBytes: 10_000 } });
    try {
      const raw = await rawRequest(
        small.adapter.port,
        'POST /api/v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
          'Content-Length: 500000000\r\n\r\n{"image":',
      );
      expect(raw).toMatch(/^HTTP\/1\.1 413/);
      expect(raw).toContain('"code":"body_too_large"');

      const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(
          `${small.url}/api/v1/conversations`,
          { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
          (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.write(`{"image":"${'A'.repeat(200_000)}`);
      });
      expect(streamed.status).toBe(413);
      expect(JSON.parse(streamed.body).error.code).toBe('body_too_large');

      const base64 = await post(`${small.url}/api/v1/conversations`, {
        image: Buffer.alloc(12_000).toString('base64'),
      });
      expect(base64.status).toBe(413);
      expect(base64.body.error.code).toBe('image_too_large');
    } finally {
      await small.stop();
    }
  });

  it('429 with Retry-After once a client passes the rate limit', async () => {
    const limited = await startWebServer(engine, { settings: { rateLimitPerMinute: 1 } });
    try {
      const image = Buffer.from(await pngBytes(35)).toString('base64');
      expect((await post(`${limited.url}/api/v1/conversations`, { image })).status).toBe(200);
      const second = await post(`${limited.url}/api/v1/conversations`, { image });
      expect(second.status).toBe(429);
      expect(second.body.error.code).toBe('rate_limited');
      expect(second.body.error.message).toMatch(/^You're asking faster than I can keep up/);
      expect(Number(second.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(Number(second.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    } finally {
      await limited.stop();
    }
  });

  it('503 when the queue is full, places in line while waiting, and 504 on timeout', async () => {
    const gated = new GatedEngine(fixture.engine.inner, 1);
    const server = await startWebServer(gated, { settings: { requestTimeoutMs: 60_000 } });
    try {
      const image = Buffer.from(await pngBytes(36)).toString('base64');
      await post(`${server.url}/api/v1/conversations`, { image }); // cached, so only generation waits below
      gated.hold();
      const running = post(`${server.url}/api/v1/conversations`, { image });
      await until('the first run to reach the gate', () => gated.arrived === 2);
      const waiting = fetch(`${server.url}/api/v1/conversations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ image }),
      });
      await until('the second request to wait', () => gated.queueLength === 1);
      const full = await post(`${server.url}/api/v1/conversations`, { image });
      expect(full.status).toBe(503);
      expect(full.body.error).toEqual({
        code: 'queue_full',
        message: 'The bot is busy right now. Please try again in a minute.',
      });
      const health = await json(fetch(`${server.url}/api/v1/health`));
      expect(health.queue).toEqual({ waiting: 1, active: 2 });
      gated.release();
      expect((await running).status).toBe(200);
      const events = await readEvents(await waiting);
      expect(events[0]).toEqual({ event: 'queued', data: { position: 1 } });
      expect(events.at(-1)?.event).toBe('answer');
    } finally {
      gated.release();
      await server.stop();
    }

    const slow = new GatedEngine(fixture.engine.inner);
    const timing = await startWebServer(slow, { settings: { requestTimeoutMs: 300 } });
    try {
      slow.hold();
      const image = Buffer.from(await pngBytes(37)).toString('base64');
      const timedOut = await post(`${timing.url}/api/v1/conversations`, { image });
      expect(timedOut.status).toBe(504);
      expect(timedOut.body.error).toEqual({ code: 'timeout', message: messages.timeout });
    } finally {
      slow.release();
      await timing.stop();
    }
  });

  it('410 when the conversation picture has expired from the cache', async () => {
    const r = await post(`${web.url}/api/v1/conversations`, {
      image: Buffer.from(await pngBytes(38)).toString('base64'),
    });
    const id = r.body.conversation;
    // Point the conversation at a picture the cache does not have, as after its TTL.
    const state = (await web.core.conversation('web', id))!;
    await web.conversations.set(`web:${id}`, { ...state, imageKey: 'gone' });
    const follow = await post(`${web.url}/api/v1/conversations/${id}/messages`, { question: 'still there?' });
    expect(follow.status).toBe(410);
    expect(follow.body.error).toEqual({ code: 'image_expired', message: messages.expired });
  });
});

describe('web API: security', () => {
  it('applies the allow-lists: web requests count as server and channel "web"', async () => {
    const image = Buffer.from(await pngBytes(40)).toString('base64');
    const allowList = { servers: ['T123'], channels: [], users: [], mode: 'ignore' as const };
    const closed = await startWebServer(engine, { settings: { allowList } });
    const open = await startWebServer(engine, {
      settings: { allowList: { ...allowList, servers: ['T123', 'web'] } },
    });
    try {
      const refused = await post(`${closed.url}/api/v1/conversations`, { image });
      expect(refused.status).toBe(403);
      expect(refused.body.error).toEqual({ code: 'not_allowed', message: messages.notAllowed });
      expect((await post(`${open.url}/api/v1/conversations`, { image })).status).toBe(200);
    } finally {
      await closed.stop();
      await open.stop();
    }
  });

  it('says so when the port is taken', async () => {
    await expect(startWebServer(engine, { config: { port: web.adapter.port } })).rejects.toThrow(
      `127.0.0.1:${web.adapter.port} is already in use; set WEB_PORT to another port`,
    );
  });

  const key = 'test-key-0123456789abcdef';

  it('needs the Bearer key when one is set, compared exactly', async () => {
    const keyed = await startWebServer(engine, { config: { apiKey: key } });
    try {
      const image = Buffer.from(await pngBytes(39)).toString('base64');
      const none = await post(`${keyed.url}/api/v1/conversations`, { image });
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expect(none.body.error.code).toBe('unauthorized');
      const wrong = await post(
        `${keyed.url}/api/v1/conversations`,
        { image },
        { authorization: `Bearer ${key}x` },
      );
      expect(wrong.status).toBe(401);
      const right = await post(
        `${keyed.url}/api/v1/conversations`,
        { image },
        { authorization: `Bearer ${key}` },
      );
      expect(right.status).toBe(200);
      expect((await fetch(`${keyed.url}/v1/models`)).status).toBe(401);
      // The page and the health check need no key: they hold nothing secret.
      expect((await fetch(`${keyed.url}/`)).status).toBe(200);
      expect((await fetch(`${keyed.url}/api/v1/health`)).status).toBe(200);
    } finally {
      await keyed.stop();
    }
  });

  it('refuses other origins unless WEB_CORS_ORIGINS lists them, and rebinding host names', async () => {
    const allowed = 'https://chat.example.com';
    const cors = await startWebServer(engine, { config: { corsOrigins: [allowed] } });
    try {
      const foreign = await fetch(`${cors.url}/api/v1/health`, {
        headers: { origin: 'https://evil.example' },
      });
      expect(foreign.status).toBe(403);
      expect((await json(foreign)).error.code).toBe('origin_not_allowed');
      const listed = await fetch(`${cors.url}/api/v1/health`, { headers: { origin: allowed } });
      expect(listed.status).toBe(200);
      expect(listed.headers.get('access-control-allow-origin')).toBe(allowed);
      const preflight = await fetch(`${cors.url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: allowed, 'access-control-request-method': 'POST' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
      const same = await fetch(`${cors.url}/api/v1/health`, { headers: { origin: cors.url } });
      expect(same.status).toBe(200);
      expect(same.headers.get('access-control-allow-origin')).toBeNull();
      const raw = await rawRequest(
        cors.adapter.port,
        'GET /api/v1/health HTTP/1.1\r\nHost: attacker.example:7860\r\nConnection: close\r\n\r\n',
      );
      expect(raw).toMatch(/^HTTP\/1\.1 403/);
      expect(raw).toContain('host_not_allowed');
    } finally {
      await cors.stop();
    }
  });
});
