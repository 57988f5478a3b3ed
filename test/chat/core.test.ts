import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Keyv from 'keyv';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ChatCore, type ChatCoreOptions } from '../../src/chat/core.js';
import { DEMO_NOTICE, messages } from '../../src/chat/messages.js';
import type { ChatSettings } from '../../src/chat/settings.js';
import type { ChatEvent, ChatMessage, IncomingImage } from '../../src/chat/types.js';
import type { Blip2Engine } from '../../src/engine/engine.js';
import { createLogger } from '../../src/util/logger.js';
import { ROOT } from '../helpers/shared.js';
import { type EngineFixture, FAST_GENERATION, openTestEngine, RecordingEngine } from './engine-fixture.js';
import { corruptJpegBytes, pngBytes, TestImage } from './images.js';
import { RecordingOutput } from './recording-output.js';

let shared: EngineFixture;
/** A fresh recorder per test around the one shared engine (loading the model once keeps the suite fast). */
let fixture: { engine: RecordingEngine };
let conversations: Keyv;
let nextId = 1;

function msg(partial: Partial<ChatMessage> & { images?: IncomingImage[] }): ChatMessage {
  return {
    platform: 'local',
    conversation: 'c1',
    user: 'u1',
    text: '',
    addressed: true,
    messageId: `m${nextId++}`,
    ...partial,
    images: partial.images ?? [],
  };
}

function core(settings: Partial<ChatSettings> = {}, extra: Partial<ChatCoreOptions> = {}): ChatCore {
  return new ChatCore({
    engine: fixture.engine,
    conversations,
    settings: { rateLimitPerMinute: 0, generation: FAST_GENERATION, ...settings },
    ...extra,
  });
}

beforeAll(async () => {
  shared = await openTestEngine();
});

afterAll(async () => {
  await shared.close();
});

beforeEach(() => {
  fixture = { engine: new RecordingEngine(shared.engine.inner) };
  conversations = new Keyv({ namespace: 'conversations' });
});

describe('chat core', () => {
  it('logs where the picture came from, not "cached" for a new one (item 12)', async () => {
    const lines: string[] = [];
    const c = core({}, { logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await c.handle(
      msg({ conversation: 'log', images: [new TestImage('new.png', await pngBytes(90))] }),
      new RecordingOutput(),
    );
    await c.handle(msg({ conversation: 'log', text: 'and now?' }), new RecordingOutput());
    const answered = lines.filter((l) => l.includes('answered in'));
    expect(answered).toHaveLength(2);
    expect(answered[0]).toMatch(/picture sent with this message/);
    expect(answered[1]).toMatch(/picture from the conversation/);
    expect(answered.join('\n')).not.toMatch(/image cached/);
  });

  it('takes more than 10 concurrent requests without a MaxListenersExceededWarning (item 12)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const c = core();
      const image = await pngBytes(3);
      const outs = Array.from({ length: 14 }, () => new RecordingOutput());
      await Promise.all(
        outs.map((out, i) =>
          c.handle(msg({ conversation: `many-${i}`, images: [new TestImage('p.png', image)] }), out),
        ),
      );
      await new Promise((r) => setImmediate(r));
      expect(outs.every((o) => o.messages.length > 0)).toBe(true);
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('captions a picture sent without text, and says the demo model is random', async () => {
    const out = new RecordingOutput();
    await core().handle(msg({ images: [new TestImage('cat.png', await pngBytes(1))] }), out);
    expect(out.messages).toHaveLength(1);
    expect(fixture.engine.requests[0]).toMatchObject({ task: 'caption' });
    expect(fixture.engine.requests[0]?.question).toBeUndefined();
    const [answer, notice] = out.texts[0]!.split('\n');
    expect(answer).toBe(fixture.engine.results[0]!.text.trim() || messages.emptyAnswer);
    expect(notice).toBe(DEMO_NOTICE);
    expect(out.typing).toBeGreaterThanOrEqual(1);
  });

  it('answers a question about a picture, then a follow-up with history, without encoding again', async () => {
    const c = core();
    const out = new RecordingOutput();
    await c.handle(msg({ text: 'what is this?', images: [new TestImage('a.png', await pngBytes(2))] }), out);
    await c.handle(msg({ text: 'and its colour?', addressed: false }), out);
    expect(out.messages).toHaveLength(2);
    const [first, second] = fixture.engine.requests;
    expect(first).toMatchObject({ question: 'what is this?', history: [] });
    expect(second).toMatchObject({
      question: 'and its colour?',
      history: [{ question: 'what is this?', answer: fixture.engine.results[0]!.text }],
    });
    expect(first?.image).toBeInstanceOf(Uint8Array);
    expect(second?.image).toBe(fixture.engine.results[0]!.imageKey);
    expect(fixture.engine.encodeCalls).toBe(1);
    expect(fixture.engine.results[1]!.imageCached).toBe(true);
  });

  it('makes a new picture the subject and starts its history afresh', async () => {
    const c = core();
    const out = new RecordingOutput();
    await c.handle(msg({ text: 'first?', images: [new TestImage('a.png', await pngBytes(3))] }), out);
    await c.handle(msg({ text: 'second?', images: [new TestImage('b.png', await pngBytes(4))] }), out);
    await c.handle(msg({ text: 'third?', addressed: false }), out);
    const [, r2, r3] = fixture.engine.requests;
    const [k1, k2] = fixture.engine.results.map((r) => r.imageKey);
    expect(k2).not.toBe(k1);
    expect(r2?.history).toEqual([]);
    expect(r3?.image).toBe(k2);
    expect(r3?.history?.map((t) => t.question)).toEqual(['second?']);
    expect(out.texts[1]).toContain(messages.newSubject);
  });

  it('uses the first of several pictures and says which', async () => {
    const out = new RecordingOutput();
    const first = new TestImage('first.png', await pngBytes(5));
    const second = new TestImage('second.png', await pngBytes(6));
    await core().handle(msg({ images: [first, second] }), out);
    expect(first.downloads).toBe(1);
    expect(second.downloads).toBe(0);
    expect(out.texts[0]).toContain(messages.severalImages(2, 'first.png'));
  });

  it("says the adapter's own usage hint (its command's name); the core names no platform command (item 21)", async () => {
    const c = core();
    const out = Object.assign(new RecordingOutput(), { usageHint: 'Use `/look` with a picture first.' });
    await c.handle(msg({ text: 'hello?' }), out);
    expect(out.texts).toEqual(['Use `/look` with a picture first.']);
    for (const file of ['core.ts', 'messages.ts']) {
      const text = readFileSync(join(ROOT, 'src', 'chat', file), 'utf8');
      expect(text, file).not.toMatch(/\/describe|\/image\b|case '(discord|slack|local|web)'/);
    }
  });

  it('gives a hint when there is no picture anywhere, and stays quiet when not addressed', async () => {
    const c = core();
    const out = new RecordingOutput();
    await c.handle(msg({ text: 'hello?' }), out);
    expect(out.texts).toEqual([messages.noPicture]);
    await c.handle(msg({ text: 'chatting', addressed: false, conversation: 'other' }), out);
    expect(out.messages).toHaveLength(1);
    expect(fixture.engine.requests).toHaveLength(0);
  });

  it('does not start a conversation from a picture nobody addressed to it', async () => {
    const c = core();
    const out = new RecordingOutput();
    await c.handle(
      msg({
        addressed: false,
        conversation: 'someone-elses-thread',
        images: [new TestImage('x.png', await pngBytes(9))],
      }),
      out,
    );
    expect(out.messages).toHaveLength(0);
    expect(fixture.engine.encodeCalls).toBe(0);
  });

  it('answers a text file, an oversize file and a corrupt image politely, and keeps working', async () => {
    const c = core({ maxImageBytes: 1000 });
    const text = new TestImage('notes.txt', new TextEncoder().encode('hello'), { contentType: 'text/plain' });
    const big = new TestImage('big.png', new Uint8Array(5000), { contentType: 'image/png' });
    const sneaky = new TestImage('sneaky.png', new Uint8Array(5000), {
      contentType: 'image/png',
      size: null,
    });
    const corrupt = new TestImage('broken.jpg', await corruptJpegBytes(), { contentType: 'image/jpeg' });
    const outs = [new RecordingOutput(), new RecordingOutput(), new RecordingOutput(), new RecordingOutput()];
    await c.handle(msg({ conversation: 'a', images: [text] }), outs[0]!);
    await c.handle(msg({ conversation: 'b', images: [big] }), outs[1]!);
    await c.handle(msg({ conversation: 'c', images: [sneaky] }), outs[2]!);
    await c.handle(msg({ conversation: 'd', images: [corrupt] }), outs[3]!);
    expect(outs[0]!.all).toMatch(/"notes\.txt" \(text\/plain\) is not a picture/);
    expect(text.downloads).toBe(0);
    expect(outs[1]!.all).toMatch(/"big\.png" is 4\.9 KB|larger than/);
    expect(big.downloads).toBe(0);
    expect(outs[2]!.all).toMatch(/too large|larger than/);
    expect(outs[3]!.messages).toHaveLength(1);
    // The engine's own words for a damaged file, not a generic apology.
    expect(outs[3]!.all).toBe(
      "Sorry, I couldn't read that image; the file seems to be damaged. Could you send it again?",
    );

    const ok = new RecordingOutput();
    await c.handle(msg({ conversation: 'e', images: [new TestImage('fine.png', await pngBytes(7))] }), ok);
    expect(ok.all).toContain(DEMO_NOTICE);
  });

  it('encodes and answers a new picture in one job: four at once answer in arrival order, each told its place (issue 12)', async () => {
    const c = core();
    const order: number[] = [];
    const events: ChatEvent[][] = [[], [], [], []];
    const outs = events.map((list, i) =>
      Object.assign(new RecordingOutput(), {
        report: (e: ChatEvent) => {
          list.push(e);
          if (e.type === 'answered') order.push(i);
        },
      }),
    );
    const images = await Promise.all(outs.map((_, i) => pngBytes(80 + i)));
    await Promise.all(
      outs.map((out, i) =>
        c.handle(msg({ conversation: `four${i}`, images: [new TestImage(`${i}.png`, images[i]!)] }), out),
      ),
    );
    expect(order).toEqual([0, 1, 2, 3]);
    // Each picture went to the engine with its question and was encoded inside that one job.
    expect(fixture.engine.requests.map((r) => r.image instanceof Uint8Array)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    for (const result of fixture.engine.results) {
      expect(result.imageCached).toBe(false);
      expect(result.timings.visionMs).toBeGreaterThan(0);
    }
    // Those behind the first were told their place while their picture waited to be encoded.
    for (const list of events.slice(1)) {
      expect(list.some((e) => e.type === 'queued')).toBe(true);
    }
    const positions = events.map((list) =>
      list.flatMap((e) => (e.type === 'queued' ? [e.position] : [])).at(0),
    );
    expect(positions.slice(1)).toEqual([1, 2, 3]);
  });

  it("times a new picture's encoding with its answer: one waiting too long is never encoded (issue 12)", async () => {
    const patient = core({ requestTimeoutMs: 60_000 });
    const hasty = core({ requestTimeoutMs: 100 });
    const long = patient.handle(
      msg({
        conversation: 'long',
        images: [new TestImage('long.png', await pngBytes(90))],
        // Long enough to outlast the other's 100 ms even on a fast, idle machine.
        options: { numBeams: 1, minNewTokens: 400, maxNewTokens: 400 },
      }),
      new RecordingOutput(),
    );
    await new Promise((r) => setTimeout(r, 5));
    const out = new RecordingOutput();
    const late = await pngBytes(91);
    await hasty.handle(msg({ conversation: 'hasty', images: [new TestImage('late.png', late)] }), out);
    await long;
    expect(out.texts).toEqual([messages.timeout]);
    const inner = fixture.engine.inner as Blip2Engine;
    expect(await inner.cache.has(inner.imageKey(late))).toBe(false);
  });

  it('shows queue positions and edits the notice into the answer', async () => {
    const c = core();
    const outs = Array.from({ length: 6 }, () => new RecordingOutput());
    const images = await Promise.all(outs.map((_, i) => pngBytes(20 + i)));
    await Promise.all(
      outs.map((out, i) =>
        c.handle(msg({ conversation: `q${i}`, images: [new TestImage(`${i}.png`, images[i]!)] }), out),
      ),
    );
    for (const out of outs) {
      expect(out.messages).toHaveLength(1);
      expect(out.all).toContain(DEMO_NOTICE);
    }
    const queued = outs.filter((o) =>
      o.messages[0]!.history.some((h) => /#\d+ in line|next in line/.test(h)),
    );
    expect(queued.length).toBeGreaterThan(0);
    expect(fixture.engine.positions.length).toBeGreaterThan(0);
  });

  it('deletes a queue notice it cannot edit, so no stale "#3 in line" stays behind the answer (item 10)', async () => {
    class FailingEdits extends RecordingOutput {
      deleted = 0;
      override async edit(): Promise<void> {
        throw new Error('cant_update_message');
      }
      async delete(posted: { id: string }): Promise<void> {
        this.deleted++;
        this.messages.splice(
          this.messages.findIndex((m) => m.id === posted.id),
          1,
        );
      }
    }
    const c = core();
    const outs = Array.from({ length: 6 }, () => new FailingEdits());
    const images = await Promise.all(outs.map((_, i) => pngBytes(60 + i)));
    await Promise.all(
      outs.map((out, i) =>
        c.handle(msg({ conversation: `d${i}`, images: [new TestImage('d.png', images[i]!)] }), out),
      ),
    );
    expect(outs.some((o) => o.deleted > 0)).toBe(true);
    for (const out of outs) {
      expect(out.messages).toHaveLength(1);
      expect(out.all).toContain(DEMO_NOTICE);
      expect(out.all).not.toMatch(/in line/);
    }
  });

  it('posts the queue position once where edits are impossible', async () => {
    const c = core();
    const outs = Array.from({ length: 4 }, () => new RecordingOutput(2000, false));
    const images = await Promise.all(outs.map((_, i) => pngBytes(40 + i)));
    await Promise.all(
      outs.map((out, i) =>
        c.handle(msg({ conversation: `n${i}`, images: [new TestImage('x.png', images[i]!)] }), out),
      ),
    );
    for (const out of outs) {
      expect(out.messages.every((m) => m.history.length === 1)).toBe(true);
      expect(out.messages.filter((m) => m.text.includes(DEMO_NOTICE))).toHaveLength(1);
      expect(out.messages.length).toBeLessThanOrEqual(2);
    }
  });

  it('says the bot is busy when the queue is full', async () => {
    const small = await openTestEngine({ queueCapacity: 1 });
    fixture = small;
    const c = core();
    const outs = Array.from({ length: 6 }, () => new RecordingOutput());
    const images = await Promise.all(outs.map((_, i) => pngBytes(60 + i)));
    await Promise.all(
      outs.map((out, i) =>
        c.handle(msg({ conversation: `f${i}`, images: [new TestImage('x.png', images[i]!)] }), out),
      ),
    );
    const busy = outs.filter((o) => o.all.includes('busy right now'));
    const answered = outs.filter((o) => o.all.includes(DEMO_NOTICE));
    expect(busy.length).toBeGreaterThan(0);
    expect(answered.length).toBeGreaterThan(0);
    expect(busy.length + answered.length).toBe(outs.length);
    await small.close();
  });

  it('limits each user to N requests a minute, except the local terminal (item 15)', async () => {
    let now = 1_000_000;
    const c = core({ rateLimitPerMinute: 2 }, { now: () => now });
    const out = new RecordingOutput();
    const on = (partial: Parameters<typeof msg>[0]) => msg({ platform: 'discord', ...partial });
    await c.handle(on({ text: 'one', images: [new TestImage('a.png', await pngBytes(8))] }), out);
    await c.handle(on({ text: 'two' }), out);
    await c.handle(on({ text: 'three' }), out);
    expect(out.texts[2]).toMatch(/Please wait 60 s/);
    await c.handle(on({ text: 'other user', user: 'u2' }), out);
    expect(out.texts[3]).toContain(DEMO_NOTICE);
    now += 60_001;
    await c.handle(on({ text: 'four' }), out);
    expect(out.texts[4]).toContain(DEMO_NOTICE);
    expect(fixture.engine.requests.map((r) => r.question)).toEqual(['one', 'two', 'other user', 'four']);

    // The person at the terminal runs the bot: no limit for them.
    const local = new RecordingOutput();
    await c.handle(msg({ conversation: 'term', images: [new TestImage('b.png', await pngBytes(8))] }), local);
    for (const text of ['a', 'b', 'c']) await c.handle(msg({ conversation: 'term', text }), local);
    expect(local.all).not.toMatch(/Please wait/);
    expect(local.messages).toHaveLength(4);
  });

  it('ignores or tells people outside the allow-list, as configured', async () => {
    const allowList = { servers: ['s1'], channels: [], users: [], mode: 'ignore' as const };
    const image = new TestImage('a.png', await pngBytes(9));
    const ignored = new RecordingOutput();
    await core({ allowList }).handle(msg({ server: 's2', images: [image] }), ignored);
    expect(ignored.messages).toHaveLength(0);
    expect(image.downloads).toBe(0);

    const told = new RecordingOutput();
    await core({ allowList: { ...allowList, mode: 'tell' } }).handle(
      msg({ server: 's2', images: [image] }),
      told,
    );
    expect(told.texts).toEqual([messages.notAllowed]);

    const allowed = new RecordingOutput();
    await core({ allowList }).handle(msg({ server: 's1', images: [image] }), allowed);
    expect(allowed.all).toContain(DEMO_NOTICE);
  });

  it('apologises on a timeout instead of staying silent', async () => {
    const out = new RecordingOutput();
    const slow = new TestImage('slow.png', await pngBytes(10), { hang: true });
    await core({ requestTimeoutMs: 50 }).handle(msg({ images: [slow] }), out);
    expect(out.texts).toEqual([messages.timeout]);
  });

  it('says the picture expired when the engine no longer has it', async () => {
    await conversations.set('local:old', {
      v: 1,
      imageKey: 'img-0000000000000000000000000000000000000000000000000000000000000000',
      imageName: 'gone.png',
      turns: [],
      updatedAt: 0,
    });
    const c = core();
    const out = new RecordingOutput();
    await c.handle(msg({ conversation: 'old', text: 'what was it?' }), out);
    expect(out.texts).toEqual([messages.expired]);
    await c.handle(msg({ conversation: 'old', text: 'again?' }), out);
    expect(out.texts[1]).toBe(messages.noPicture);
  });

  it('answers the same message id once', async () => {
    const c = core();
    const out = new RecordingOutput();
    const image = new TestImage('a.png', await pngBytes(11));
    const m = msg({ images: [image] });
    await Promise.all([c.handle(m, out), c.handle({ ...m }, out)]);
    await c.handle({ ...m }, out);
    expect(out.messages).toHaveLength(1);
    expect(image.downloads).toBe(1);
  });

  it('splits long answers at the platform limit', async () => {
    const out = new RecordingOutput(40);
    await core().handle(msg({ images: [new TestImage('a.png', await pngBytes(12))] }), out);
    expect(out.messages.length).toBeGreaterThan(1);
    for (const text of out.texts) expect(text.length).toBeLessThanOrEqual(40);
    expect(out.texts.join(' ').replace(/\s+/g, ' ')).toContain('Demo model');
  });

  it('keeps the typing indicator alive while a job runs', async () => {
    const out = new RecordingOutput();
    const slow = new TestImage('slow.png', await pngBytes(13), { hang: true });
    await core({ typingIntervalMs: 10, requestTimeoutMs: 80 }).handle(msg({ images: [slow] }), out);
    expect(out.typing).toBeGreaterThanOrEqual(4);
    const after = out.typing;
    await new Promise((r) => setTimeout(r, 40));
    expect(out.typing).toBe(after);
  });

  it('refuses over-long questions with a clear message', async () => {
    const out = new RecordingOutput();
    await core({ maxQuestionChars: 20 }).handle(
      msg({ text: 'x'.repeat(21), images: [new TestImage('a.png', await pngBytes(14))] }),
      out,
    );
    expect(out.texts).toEqual([messages.questionTooLong(20)]);
  });

  it('on shutdown cancels what does not finish in time and turns new requests away', async () => {
    const c = core();
    const out = new RecordingOutput();
    const running = c.handle(
      msg({ images: [new TestImage('slow.png', await pngBytes(15), { hang: true })] }),
      out,
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(c.activeJobs).toBe(1);
    await c.shutdown(30);
    await running;
    expect(out.texts).toEqual([messages.shuttingDown]);
    const late = new RecordingOutput();
    await c.handle(msg({ conversation: 'late', images: [new TestImage('a.png', await pngBytes(16))] }), late);
    expect(late.texts).toEqual([messages.shuttingDown]);
  });

  it('tells outputs that ask for facts what happened: the answer with its cost, or why not', async () => {
    const c = core({ maxQuestionChars: 10 });
    const events: ChatEvent[] = [];
    const out = Object.assign(new RecordingOutput(), { report: (e: ChatEvent) => events.push(e) });
    await c.handle(msg({ conversation: 'facts', images: [new TestImage('f.png', await pngBytes(17))] }), out);
    const answered = events.find((e) => e.type === 'answered');
    expect(answered).toMatchObject({ task: 'caption', question: '', imageName: 'f.png', notes: [] });
    if (answered?.type !== 'answered') throw new Error('no answer');
    // The picture was new: its encoding is part of this answer.
    expect(answered.result.imageCached).toBe(false);
    expect(answered.result.timings.visionMs).toBeGreaterThan(0);
    expect(answered.text).toBe(out.texts[0]);
    await c.handle(msg({ conversation: 'facts', text: 'x'.repeat(11) }), out);
    expect(events.at(-1)).toEqual({
      type: 'refused',
      reason: 'question_too_long',
      message: messages.questionTooLong(10),
    });
    await c.handle(msg({ conversation: 'empty', text: 'hello?' }), out);
    expect(events.at(-1)).toMatchObject({ type: 'refused', reason: 'no_picture' });
  });

  it("uses a message's own generation settings and history over the stored ones", async () => {
    const c = core();
    const image = await pngBytes(18);
    const out = new RecordingOutput();
    await c.handle(
      msg({ conversation: 'own', text: 'first?', images: [new TestImage('o.png', image)] }),
      out,
    );
    const history = [{ question: 'earlier?', answer: 'yes' }];
    await c.handle(msg({ conversation: 'own', text: 'next?', options: { maxNewTokens: 2 }, history }), out);
    expect(fixture.engine.requests.at(-1)).toMatchObject({
      question: 'next?',
      history,
      options: { numBeams: 1, maxNewTokens: 2 },
    });
    expect((await c.conversation('local', 'own'))?.turns.map((t) => t.question)).toEqual([
      'earlier?',
      'next?',
    ]);
  });
});
