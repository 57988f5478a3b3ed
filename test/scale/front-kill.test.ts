/**
 * A front SIGKILLed while its job runs (issue 12, deliverable 4): real processes (`blip2-bot start --role front`
 * ×2 with the web adapter, `blip2-bot worker`) on a real redis-server. The killed front's answer is delivered by
 * the other one: its web thread gets the turn exactly once, and the conversation goes on through it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BotProcess, freePort, waitReady } from '../../bench/load-run.js';
import { messages } from '../../src/chat/messages.js';
import { closeKeyv, createKeyv } from '../../src/storage/keyv-store.js';
import { pngBytes } from '../chat/images.js';
import {
  type BotCluster,
  HAS_REDIS,
  openBotCluster,
  owedAfterSweep,
  queuedOwed,
  REDIS_SKIP_REASON,
} from './redis-fixture.js';

const GREEDY = { numBeams: 1, maxNewTokens: 6 };

interface ThreadBody {
  turns: { question: string | null; answer: string; notes: string[] }[];
}

describe.skipIf(!HAS_REDIS)('a front killed outright', () => {
  let cluster: BotCluster;
  // A short heartbeat, so a surviving front takes over within about 1.3 s.
  const front = async () =>
    cluster.spawn(
      ['start', '--role', 'front'],
      { WEB_PORT: String(await freePort()), FRONT_HEARTBEAT_SECONDS: '1' },
      { ready: false },
    );
  const worker = () => cluster.spawn(['worker']);
  const thread = async (bot: BotProcess, id: string): Promise<ThreadBody> => {
    const res = await fetch(`${bot.webUrl}/api/v1/conversations/${id}`);
    expect(res.status).toBe(200);
    return (await res.json()) as ThreadBody;
  };

  beforeAll(async () => {
    cluster = await openBotCluster();
  });

  afterAll(async () => {
    await cluster?.close();
  });

  /** Readings of a thread through `bot` until it has `count` turns (up to 30 s). */
  const turnsOf = async (bot: BotProcess, id: string, count: number): Promise<ThreadBody['turns']> => {
    let turns: ThreadBody['turns'] = [];
    for (let i = 0; i < 300 && turns.length < count; i++) {
      // A new conversation's thread exists once its first answer is recorded (404 until then).
      const res = await fetch(`${bot.webUrl}/api/v1/conversations/${id}`);
      if (res.status === 200) turns = ((await res.json()) as ThreadBody).turns;
      if (turns.length < count) await new Promise((r) => setTimeout(r, 100));
    }
    return turns;
  };

  it('has its answers delivered by another front: the web thread gets each turn once, and the talk goes on', async () => {
    await worker();
    const [a, b, c] = [await front(), await front(), await front()];
    await Promise.all([waitReady(a), waitReady(b), waitReady(c)]);

    // The queue is paused while a front dies, so its job surely has not ended by then.
    await cluster.queue.pause();
    // 1. A new picture, streamed: the thread's id comes with the first event, then front A dies.
    const stream = await fetch(`${a.webUrl}/api/v1/conversations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        image: Buffer.from(await pngBytes(401)).toString('base64'),
        imageName: 'cat.png',
        question: 'what is in the picture?',
        options: GREEDY,
      }),
    });
    const id = stream.headers.get('x-conversation-id')!;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const streamed = stream.text().then(
      (text) => text,
      () => 'connection lost',
    );
    expect(await queuedOwed(cluster.redis, 1)).toBe(1);
    a.child.kill('SIGKILL');
    // Front A never answered: the stream broke with it.
    expect(await streamed).not.toMatch(/event: answer/);
    await cluster.queue.resume();
    const first = await turnsOf(b, id, 1);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ question: 'what is in the picture?', notes: [messages.resumed] });
    expect(first[0]!.answer.length).toBeGreaterThan(0);
    expect(await owedAfterSweep(cluster.redis)).toBe(0);

    // 2. A follow-up on front B, which dies too; front C delivers it.
    await cluster.queue.pause();
    const asked = fetch(`${b.webUrl}/api/v1/conversations/${id}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question: 'and what colour is it?', options: GREEDY }),
    }).then(
      (res) => res.status,
      () => 'connection lost' as const,
    );
    expect(await queuedOwed(cluster.redis, 1)).toBe(1);
    b.child.kill('SIGKILL');
    expect(await asked).toBe('connection lost');
    await cluster.queue.resume();
    const turns = await turnsOf(c, id, 2);
    expect(turns.map((t) => t.question)).toEqual(['what is in the picture?', 'and what colour is it?']);
    expect(turns[1]!.notes).toContain(messages.resumed);
    // Handed on, then cleared.
    expect(await owedAfterSweep(cluster.redis)).toBe(0);
    // Several sweeps later, still once each.
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await thread(c, id)).turns).toHaveLength(2);

    // The conversation state has both adopted turns: a follow-up through C is answered from them.
    const next = await fetch(`${c.webUrl}/api/v1/conversations/${id}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question: 'anything else?', options: GREEDY }),
    });
    expect(next.status).toBe(200);
    expect(await thread(c, id)).toMatchObject({ imageName: 'cat.png', hasPicture: true });
    expect((await thread(c, id)).turns).toHaveLength(3);
    const conversations = createKeyv({ kind: 'redis', redisUrl: cluster.url }, 'conversations');
    const state = (await conversations.get(`web:${id}`)) as { turns: { question: string }[] };
    await closeKeyv(conversations);
    expect(state.turns.map((t) => t.question)).toEqual([
      'what is in the picture?',
      'and what colour is it?',
      'anything else?',
    ]);
  }, 120_000);
});

describe.skipIf(HAS_REDIS)('a front killed outright (skipped)', () => {
  it.skip(REDIS_SKIP_REASON, () => {});
});
