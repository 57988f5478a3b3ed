/**
 * A front's QueueEngine and a worker's BullMQ worker in one process, on a real redis-server: what crosses the
 * queue (bytes once, errors as their classes, places in line, cancellation) without the cost of child processes.
 */
import type { Redis } from 'ioredis';
import type Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatCore } from '../../src/chat/core.js';
import type { ChatMessage } from '../../src/chat/types.js';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import { AnsweredElsewhereError, ImageError, RequestAbortedError } from '../../src/engine/errors.js';
import { ThreadedEngine } from '../../src/engine/threaded-engine.js';
import { UserFacingError } from '../../src/errors.js';
import { type RunningWorker, startAnswerWorker } from '../../src/scale/answer-worker.js';
import { bytesKey } from '../../src/scale/jobs.js';
import { QueueEngine } from '../../src/scale/queue-engine.js';
import { connectRedis, QueueUnavailableError } from '../../src/scale/redis.js';
import { redisChatState } from '../../src/scale/shared-state.js';
import { closeKeyv, createKeyv } from '../../src/storage/keyv-store.js';
import { createLogger } from '../../src/util/logger.js';
import { corruptJpegBytes, pngBytes, TestImage } from '../chat/images.js';
import { RecordingOutput } from '../chat/recording-output.js';
import { HAS_REDIS, openRedis, REDIS_SKIP_REASON } from './redis-fixture.js';

const GREEDY = { numBeams: 1, maxNewTokens: 4 };

describe.skipIf(!HAS_REDIS)('the BullMQ queue between a front and a worker', () => {
  let server: Awaited<ReturnType<typeof openRedis>>;
  let redis: Redis;
  let images: Keyv;
  let engine: ThreadedEngine;
  let worker: RunningWorker;
  let front: QueueEngine;
  const logs: string[] = [];

  beforeAll(async () => {
    server = await openRedis();
    redis = await connectRedis(server.url);
    const store = { kind: 'redis' as const, redisUrl: server.url };
    images = createKeyv(store, 'images');
    const logger = createLogger({ level: 'info', format: 'json', write: (l) => logs.push(l) });
    engine = await ThreadedEngine.load(await ensureDemoModel(), { store });
    worker = await startAnswerWorker({ queueUrl: server.url, redis, engine, logger: logger.child('worker') });
    front = await QueueEngine.connect({ queueUrl: server.url, redis, images, logger: logger.child('front') });
  }, 60_000);

  afterAll(async () => {
    await front?.close();
    await worker?.drain(1_000);
    await engine?.close();
    if (images) await closeKeyv(images);
    redis?.disconnect();
    await server?.close();
  });

  it("serves the workers' model, and sends a picture's bytes only while no worker has it", async () => {
    expect(front.modelId).toBe(engine.modelId);
    expect(front.demo).toBe(true);
    const bytes = await pngBytes(201);
    const key = front.imageKey(bytes);
    expect(key).toBe(engine.imageKey(bytes));
    const writes: string[] = [];
    const monitor = await redis.duplicate().monitor();
    monitor.on('monitor', (_t: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'set' && args[1]?.includes(':bytes:')) writes.push(args[1]);
    });
    const first = await front.generate({
      image: bytes,
      question: 'what?',
      options: GREEDY,
      requestId: 'bytes-1',
    });
    expect(first.imageCached).toBe(false);
    expect(first.imageKey).toBe(key);
    // Encoded once, the bytes are dropped; a second request with the same picture sends only its key.
    expect(await redis.exists(bytesKey(key))).toBe(0);
    const second = await front.generate({
      image: bytes,
      question: 'and?',
      options: GREEDY,
      requestId: 'bytes-2',
    });
    expect(second.imageCached).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    monitor.disconnect();
    expect(writes).toEqual([bytesKey(key)]);
  });

  it('runs one job per request id: a redelivered request is not answered twice', async () => {
    const bytes = await pngBytes(202);
    const a = front.generate({ image: bytes, options: GREEDY, requestId: 'same-id' });
    const answer = await a;
    expect(answer.text.length).toBeGreaterThan(0);
    // The job is not run again, and its answer, already handed on, is not handed on twice: the second asker is
    // told at once that it was answered elsewhere (the chat core then says nothing).
    const again = front.generate({
      image: bytes,
      options: GREEDY,
      requestId: 'same-id',
      signal: AbortSignal.timeout(5_000),
    });
    await expect(again).rejects.toBeInstanceOf(AnsweredElsewhereError);
  });

  it('answers request ids BullMQ would refuse or replace (digits only, empty)', async () => {
    for (const requestId of ['1234', '']) {
      const answer = await front.generate({
        image: await pngBytes(203),
        options: GREEDY,
        requestId,
        signal: AbortSignal.timeout(20_000),
      });
      expect(answer.text.length).toBeGreaterThan(0);
    }
  });

  it("brings the engine's errors back as their own classes, with the messages for people", async () => {
    const corrupt = await front
      .generate({ image: await corruptJpegBytes(), requestId: 'bad-1' })
      .catch((e) => e);
    expect(corrupt).toBeInstanceOf(ImageError);
    expect(corrupt).toBeInstanceOf(UserFacingError);
    expect(corrupt.code).toBe('corrupt');
    const expired = await front
      .generate({ image: 'img-gone', question: 'x?', requestId: 'bad-2' })
      .catch((e) => e);
    expect(expired).toBeInstanceOf(ImageError);
    expect(expired.code).toBe('expired');
  });

  it('tells waiting requests their place in line, and cancels one that gives up', async () => {
    // Long enough (≥ 1 ms a step even on an idle machine) that the others are seen waiting by a 500 ms poll.
    const long = { numBeams: 4, minNewTokens: 512, maxNewTokens: 512 };
    const running = front.generate({ image: await pngBytes(203), options: long, requestId: 'line-0' });
    await new Promise((r) => setTimeout(r, 300));
    const positions: number[][] = [[], [], []];
    const waiting = [1, 2].map(async (i) =>
      front.generate({
        image: await pngBytes(203 + i),
        options: GREEDY,
        requestId: `line-${i}`,
        onQueuePosition: (p) => positions[i - 1]!.push(p),
      }),
    );
    const controller = new AbortController();
    const gaveUp = front.generate({
      image: await pngBytes(210),
      options: GREEDY,
      requestId: 'line-gave-up',
      signal: controller.signal,
      onQueuePosition: (p) => {
        positions[2]!.push(p);
        // It gives up while it waits.
        controller.abort();
      },
    });
    await expect(gaveUp).rejects.toBeInstanceOf(RequestAbortedError);
    await Promise.all([running, ...waiting]);
    // Three waited behind the running job: each was told a place from 1 to 3, and not all the same one.
    const firsts = positions.map((p) => p[0]);
    for (const p of firsts) expect(p).toBeGreaterThanOrEqual(1);
    for (const p of firsts) expect(p).toBeLessThanOrEqual(3);
    expect(new Set(firsts).size).toBeGreaterThan(1);
    // Removed from the line at once (a job hash left behind would be run by the next free worker).
    expect(await redis.exists('blip2:answers:line-gave-up')).toBe(0);
    // The request that gave up left the line, and no worker answered it.
    expect(logs.some((l) => l.includes('"requestId":"line-gave-up"') && l.includes('answered'))).toBe(false);
  }, 30_000);

  it('logs each job with the request id it came with (JSON lines)', () => {
    const line = logs.map((l) => JSON.parse(l)).find((l) => l.requestId === 'bytes-1');
    expect(line).toMatchObject({ level: 'info', requestId: 'bytes-1', scope: 'worker/job' });
    expect(line.msg).toMatch(/answered in \d+ ms/);
  });

  it('lets any front take any event: one answer per message, one rate limit and one conversation across fronts', async () => {
    const conversations = createKeyv({ kind: 'redis', redisUrl: server.url }, 'conversations');
    const shared = redisChatState(redis);
    const fronts = [0, 1].map(
      () =>
        new ChatCore({
          engine: front,
          conversations,
          shared,
          settings: { rateLimitPerMinute: 3, generation: { caption: GREEDY, question: GREEDY } },
        }),
    );
    const picture = new TestImage('p.png', await pngBytes(220));
    const message = (id: string, extra: Partial<ChatMessage> = {}): ChatMessage => ({
      platform: 'slack',
      conversation: 'C1:1.0',
      user: 'U1',
      text: '',
      images: [],
      addressed: true,
      messageId: id,
      ...extra,
    });
    // Slack retries one event to two fronts at once: answered once.
    const outs = [new RecordingOutput(), new RecordingOutput()];
    const first = message('ev-1', { text: 'what is it?', images: [picture] });
    await Promise.all(fronts.map((f, i) => f.handle(first, outs[i]!)));
    expect(outs.flatMap((o) => o.messages)).toHaveLength(1);
    // A follow-up on the other front knows the conversation.
    const follow = new RecordingOutput();
    await fronts[1]!.handle(message('ev-2', { text: 'and the colour?', addressed: false }), follow);
    expect(follow.messages).toHaveLength(1);
    const state = await fronts[0]!.conversation('slack', 'C1:1.0');
    expect(state?.turns.map((t) => t.question)).toEqual(['what is it?', 'and the colour?']);
    // Three a minute for U1, counted across both fronts.
    await fronts[0]!.handle(message('ev-3', { text: 'third?' }), new RecordingOutput());
    const limited = new RecordingOutput();
    await fronts[1]!.handle(message('ev-4', { text: 'fourth?' }), limited);
    expect(limited.texts[0]).toMatch(/try again|wait|minute/i);
    await closeKeyv(conversations);
  }, 30_000);

  it('says clearly when the Redis is not there', async () => {
    const error = await connectRedis('redis://127.0.0.1:1', 1_000).catch((e) => e);
    expect(error).toBeInstanceOf(QueueUnavailableError);
    expect(error.userMessage).toMatch(/Cannot reach the queue's Redis at 127\.0\.0\.1:1 \(QUEUE_URL\)/);
  });
});

describe.skipIf(HAS_REDIS)('the BullMQ queue (skipped)', () => {
  it.skip(REDIS_SKIP_REASON, () => {});
});
