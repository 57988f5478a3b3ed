import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NO_CONTENT_NOTICE } from '../../adapters/discord/index.js';
import { DISCORD_USAGE_HINT } from '../../adapters/discord/outputs.js';
import { DEMO_NOTICE, messages } from '../../src/chat/messages.js';
import { type EngineFixture, openTestEngine } from '../chat/engine-fixture.js';
import { corruptJpegBytes, pngBytes } from '../chat/images.js';
import { DiscordEmulator, type EmulatedMessage } from '../emulators/discord/emulator.js';
import { startTestBot, type TestBot } from './harness.js';

let emulator: DiscordEmulator;
let bot: TestBot | undefined;
let tmp: string;
let engine: EngineFixture;

beforeAll(async () => {
  engine = await openTestEngine();
  emulator = await DiscordEmulator.start();
  tmp = mkdtempSync(join(tmpdir(), 'blip2-discord-'));
});

afterEach(async (context) => {
  if (context.task.result?.state === 'fail' && bot) console.log(bot.logs.join('\n'));
  await bot?.stop();
  bot = undefined;
});

afterAll(async () => {
  await emulator.stop();
  await engine.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The bot's last message in a channel once it carries a finished answer (or one of `also`). */
function answerIn(channelId: string, also: string[] = []): EmulatedMessage | undefined {
  return emulator
    .botMessages(channelId)
    .find((m) => m.content.includes(DEMO_NOTICE) || also.some((text) => m.content.includes(text)));
}

describe('Discord adapter against the emulator', () => {
  it('answers a mention with a photo in a new thread, then a follow-up there without a mention', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const photo = await pngBytes(1);
    const source = emulator.userMessage({
      channelId: emulator.channels.general.id,
      mention: true,
      content: 'what is in this picture?',
      attachments: [{ name: 'cat.png', contentType: 'image/png', bytes: photo }],
    });
    const thread = await emulator.waitFor('thread', () => emulator.thread(source.id));
    expect(thread.parent_id).toBe(emulator.channels.general.id);
    expect(thread.name).toBe('what is in this picture?');
    const first = await emulator.waitFor('first answer', () => answerIn(thread.id));
    expect(first.content.split('\n')).toContain(DEMO_NOTICE);
    expect(emulator.botMessages(emulator.channels.general.id)).toHaveLength(0);
    expect(emulator.typing.get(emulator.channels.general.id) ?? 0).toBeGreaterThan(0);

    emulator.userMessage({ channelId: thread.id, content: 'and what colour is it?' });
    await emulator.waitFor('follow-up answer', () => emulator.botMessages(thread.id).length >= 2 && true);
    const recorder = bot.engine;
    await emulator.waitFor('second result', () => recorder.results.length >= 2);
    expect(recorder.encodeCalls).toBe(1);
    expect(recorder.results[1]!.imageCached).toBe(true);
    expect(recorder.requests[1]).toMatchObject({
      question: 'and what colour is it?',
      history: [{ question: 'what is in this picture?' }],
    });
    expect(emulator.botMessages(thread.id)[1]!.content).toContain(DEMO_NOTICE);
  });

  it('acknowledges /describe within 3 seconds, then edits in the answer and opens a thread on it', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const interaction = emulator.slashCommand({
      channelId: emulator.channels.general.id,
      attachment: { name: 'dog.png', contentType: 'image/png', bytes: await pngBytes(2) },
      question: 'is there a dog?',
    });
    await emulator.waitFor('answer', () => interaction.original?.content.includes(DEMO_NOTICE));
    expect(interaction.callbacks).toHaveLength(1);
    expect(interaction.callbacks[0]!.type).toBe(5);
    expect(interaction.callbacks[0]!.at - interaction.dispatchedAt).toBeLessThan(3000);
    expect(bot.engine.requests[0]).toMatchObject({ question: 'is there a dog?' });
    const thread = await emulator.waitFor('thread on the reply', () =>
      emulator.thread(interaction.original!.id),
    );
    expect(thread.name).toBe('is there a dog?');

    emulator.userMessage({ channelId: thread.id, content: 'what breed?' });
    await emulator.waitFor('follow-up', () => answerIn(thread.id));
    expect(bot.engine.requests[1]).toMatchObject({
      question: 'what breed?',
      history: [{ question: 'is there a dog?' }],
    });
    expect(bot.engine.encodeCalls).toBe(1);
  });

  it('answers a text file, a corrupt image and an oversize attachment politely, and keeps running', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine, settings: { maxImageBytes: 100_000 } });
    const general = emulator.channels.general.id;
    const text = emulator.userMessage({
      channelId: general,
      mention: true,
      attachments: [
        {
          name: 'notes.txt',
          contentType: 'text/plain; charset=utf-8',
          bytes: new TextEncoder().encode('hi'),
        },
      ],
    });
    const corrupt = emulator.userMessage({
      channelId: general,
      mention: true,
      attachments: [{ name: 'broken.jpg', contentType: 'image/jpeg', bytes: await corruptJpegBytes() }],
    });
    const big = emulator.userMessage({
      channelId: general,
      mention: true,
      attachments: [{ name: 'huge.png', contentType: 'image/png', bytes: new Uint8Array(200_000) }],
    });
    const lying = emulator.userMessage({
      channelId: general,
      mention: true,
      attachments: [
        { name: 'small.png', contentType: 'image/png', bytes: new Uint8Array(200_000), declaredSize: 1000 },
      ],
    });
    const reply = (m: EmulatedMessage) =>
      emulator.waitFor(`reply to ${m.attachments[0]!.filename}`, () => emulator.botMessages(m.id)[0]);
    expect((await reply(text)).content).toMatch(/"notes\.txt" \(text\/plain\) is not a picture/);
    // The engine's own words for a damaged file, not a generic apology.
    expect((await reply(corrupt)).content).toBe(
      "Sorry, I couldn't read that image; the file seems to be damaged. Could you send it again?",
    );
    expect((await reply(big)).content).toMatch(/"huge\.png" is 195 KB, larger than the 98 KB I accept/);
    expect((await reply(lying)).content).toMatch(/larger than the 98 KB I accept/);
    const downloads = emulator.requests.filter((r) => r.path.startsWith('/attachments/'));
    expect(downloads.some((r) => r.path.includes('notes.txt'))).toBe(false);
    expect(downloads.some((r) => r.path.includes('huge.png'))).toBe(false);

    const ok = emulator.userMessage({
      channelId: general,
      mention: true,
      attachments: [{ name: 'fine.png', contentType: 'image/png', bytes: await pngBytes(3) }],
    });
    await emulator.waitFor('a normal answer afterwards', () => answerIn(ok.id));
  });

  it('waits out a 429 with retry_after and still delivers the answer', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const source = emulator.userMessage({
      channelId: emulator.channels.general.id,
      mention: true,
      attachments: [{ name: 'a.png', contentType: 'image/png', bytes: await pngBytes(4) }],
    });
    const path = new RegExp(`^/channels/${source.id}/messages$`);
    emulator.rateLimit('POST', path, 0.4);
    const answer = await emulator.waitFor('answer after the rate limit', () => answerIn(source.id));
    const posts = emulator.requests.filter((r) => r.method === 'POST' && path.test(r.path));
    expect(posts.map((r) => r.status)).toEqual([429, 200]);
    expect(posts[1]!.at - posts[0]!.at).toBeGreaterThanOrEqual(400);
    expect(answer.content).toContain(DEMO_NOTICE);
  });

  it('answers 10 mentions at once, showing queue positions, losing none', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const photos = await Promise.all(Array.from({ length: 10 }, (_, i) => pngBytes(100 + i)));
    const sources = photos.map((bytes, i) =>
      emulator.userMessage({
        channelId: emulator.channels.general.id,
        author: i % 2 ? emulator.users.alice : emulator.users.bob,
        mention: true,
        content: i % 3 ? `question ${i}?` : '',
        attachments: [{ name: `photo-${i}.png`, contentType: 'image/png', bytes }],
      }),
    );
    const answers = await Promise.all(
      sources.map((s) => emulator.waitFor(`answer ${s.id}`, () => answerIn(s.id), 20_000)),
    );
    expect(answers).toHaveLength(10);
    for (const source of sources) {
      expect(emulator.botMessages(source.id).filter((m) => m.content.includes(DEMO_NOTICE))).toHaveLength(1);
    }
    const showedPosition = answers.filter((m) => m.history.some((h) => /#\d+ in line|next in line/.test(h)));
    expect(showedPosition.length).toBeGreaterThan(0);
    expect(bot.engine.results).toHaveLength(10);
  });

  it('remembers the conversation across a restart (SQLite store)', async () => {
    const store = { kind: 'sqlite' as const, sqlitePath: join(tmp, 'restart.sqlite') };
    bot = await startTestBot(emulator, { store });
    const source = emulator.userMessage({
      channelId: emulator.channels.general.id,
      mention: true,
      content: 'what is this?',
      attachments: [{ name: 'a.png', contentType: 'image/png', bytes: await pngBytes(5) }],
    });
    await emulator.waitFor('first answer', () => answerIn(source.id));
    await bot.stop();

    bot = await startTestBot(emulator, { store });
    emulator.userMessage({ channelId: source.id, content: 'and after the restart?' });
    await emulator.waitFor('answer after restart', () => emulator.botMessages(source.id).length >= 2 && true);
    expect(emulator.botMessages(source.id)[1]!.content).toContain(DEMO_NOTICE);
    expect(bot.engine.encodeCalls).toBe(0);
    expect(bot.engine.results[0]!.imageCached).toBe(true);
    expect(bot.engine.requests[0]).toMatchObject({
      question: 'and after the restart?',
      history: [{ question: 'what is this?' }],
    });
  });

  it('ignores people outside the allow-list, or tells them, as configured', async () => {
    const allowList = {
      servers: [],
      channels: [],
      users: [emulator.users.alice.id],
      mode: 'ignore' as const,
    };
    bot = await startTestBot(emulator, { sharedEngine: engine, settings: { allowList } });
    const general = emulator.channels.general.id;
    const photo = { name: 'a.png', contentType: 'image/png', bytes: await pngBytes(6) };
    const ignored = emulator.userMessage({
      channelId: general,
      author: emulator.users.mallory,
      mention: true,
      attachments: [photo],
    });
    const allowed = emulator.userMessage({ channelId: general, mention: true, attachments: [photo] });
    await emulator.waitFor('allowed answer', () => answerIn(allowed.id));
    expect(emulator.thread(ignored.id)).toBeUndefined();
    expect(
      emulator.botMessages(general).filter((m) => m.message_reference?.message_id === ignored.id),
    ).toHaveLength(0);
    const slash = emulator.slashCommand({
      channelId: general,
      author: emulator.users.mallory,
      attachment: photo,
    });
    await emulator.waitFor('deferred reply removed', () => slash.originalDeleted);
    await bot.stop();

    bot = await startTestBot(emulator, {
      sharedEngine: engine,
      settings: { allowList: { ...allowList, mode: 'tell' } },
    });
    const told = emulator.userMessage({
      channelId: general,
      author: emulator.users.mallory,
      mention: true,
      attachments: [photo],
    });
    const reply = await emulator.waitFor('refusal', () => emulator.botMessages(told.id)[0]);
    expect(reply.content).toBe(messages.notAllowed);
  });

  it('replies in place where threads are not allowed, and in DMs', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const noThreads = emulator.channels.noThreads.id;
    const source = emulator.userMessage({
      channelId: noThreads,
      mention: true,
      content: 'what is it?',
      attachments: [{ name: 'a.png', contentType: 'image/png', bytes: await pngBytes(7) }],
    });
    const reply = await emulator.waitFor('reply', () => answerIn(noThreads));
    expect(reply.message_reference?.message_id).toBe(source.id);
    expect(emulator.thread(source.id)).toBeUndefined();
    emulator.userMessage({ channelId: noThreads, mention: true, content: 'and now?' });
    await emulator.waitFor('follow-up by mention', () => bot!.engine.requests.length >= 2);
    expect(bot.engine.requests[1]).toMatchObject({
      question: 'and now?',
      history: [{ question: 'what is it?' }],
    });

    const dm = emulator.channels.dm.id;
    emulator.userMessage({
      channelId: dm,
      attachments: [{ name: 'b.png', contentType: 'image/png', bytes: await pngBytes(8) }],
    });
    await emulator.waitFor('DM answer', () => answerIn(dm));
    emulator.userMessage({ channelId: dm, content: 'hello' });
    await emulator.waitFor('DM follow-up', () => emulator.botMessages(dm).length >= 2 && true);
    expect(bot.engine.requests.at(-1)).toMatchObject({ question: 'hello' });
  });

  it("keeps each person's /describe conversation apart where threads cannot be opened (item 8)", async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const noThreads = emulator.channels.noThreads.id;
    const first = emulator.slashCommand({
      channelId: noThreads,
      author: emulator.users.alice,
      attachment: { name: 'a.png', contentType: 'image/png', bytes: await pngBytes(11) },
      question: 'what is it?',
    });
    await emulator.waitFor('alice answered', () => first.original?.content.includes(DEMO_NOTICE));
    const second = emulator.slashCommand({
      channelId: noThreads,
      author: emulator.users.bob,
      attachment: { name: 'b.png', contentType: 'image/png', bytes: await pngBytes(12) },
      question: 'and this one?',
    });
    await emulator.waitFor('bob answered', () => second.original?.content.includes(DEMO_NOTICE));
    expect(emulator.thread(first.original!.id)).toBeUndefined();
    // Bob's prompt must not carry Alice's turn.
    expect(bot.engine.requests[1]).toMatchObject({ question: 'and this one?' });
    expect(bot.engine.requests[1]!.history ?? []).toEqual([]);
    // Alice's follow-up by mention continues her own conversation, not Bob's.
    emulator.userMessage({
      channelId: noThreads,
      author: emulator.users.alice,
      mention: true,
      content: 'sure?',
    });
    await emulator.waitFor('alice follow-up', () => bot!.engine.requests.length >= 3);
    expect(bot.engine.requests[2]).toMatchObject({
      question: 'sure?',
      history: [{ question: 'what is it?' }],
    });
  });

  it('gives a short hint when mentioned without any picture', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    const source = emulator.userMessage({
      channelId: emulator.channels.general.id,
      mention: true,
      content: 'hi',
    });
    const reply = await emulator.waitFor('hint', () =>
      emulator
        .botMessages(emulator.channels.general.id)
        .find((m) => m.message_reference?.message_id === source.id),
    );
    expect(reply.content).toBe(DISCORD_USAGE_HINT);
    expect(emulator.thread(source.id)).toBeUndefined();
  });

  it('without the Message Content intent, says once that follow-ups need a mention', async () => {
    emulator.disallowMessageContent = true;
    try {
      bot = await startTestBot(emulator, { sharedEngine: engine });
      expect(bot.adapter.messageContent).toBe(false);
      expect(bot.logs.some((l) => l.includes('MESSAGE CONTENT INTENT'))).toBe(true);
      const source = emulator.userMessage({
        channelId: emulator.channels.general.id,
        mention: true,
        attachments: [{ name: 'a.png', contentType: 'image/png', bytes: await pngBytes(9) }],
      });
      await emulator.waitFor('caption', () => answerIn(source.id));
      emulator.userMessage({ channelId: source.id, content: 'unmentioned 1' });
      emulator.userMessage({ channelId: source.id, content: 'unmentioned 2' });
      emulator.userMessage({ channelId: source.id, mention: true, content: 'mentioned' });
      await emulator.waitFor('mentioned follow-up', () => bot!.engine.requests.length >= 2);
      await emulator.waitFor('notice', () => emulator.botMessages(source.id).length >= 3 && true);
      expect(emulator.botMessages(source.id).filter((m) => m.content === NO_CONTENT_NOTICE)).toHaveLength(1);
      expect(bot.engine.requests[1]).toMatchObject({ question: 'mentioned' });
    } finally {
      emulator.disallowMessageContent = false;
    }
  });

  it('finishes a running answer on stop before disconnecting', async () => {
    bot = await startTestBot(emulator, { sharedEngine: engine });
    // The answer is held until the stop has begun, so the test fails unless stop really waits for it.
    let release = () => {};
    bot.engine.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const source = emulator.userMessage({
      channelId: emulator.channels.general.id,
      mention: true,
      attachments: [{ name: 'a.png', contentType: 'image/png', bytes: await pngBytes(10) }],
    });
    await emulator.waitFor('job running', () => bot!.engine.requests.length > 0);
    expect(answerIn(source.id)).toBeUndefined();
    const running = bot;
    bot = undefined;
    let stopped = false;
    const stopping = running.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(stopped, 'stop waits for the running answer').toBe(false);
    release();
    await stopping;
    expect(answerIn(source.id)).toBeDefined();
  });
});
