/**
 * The Slack adapter end to end in HTTP mode: the real Bolt app on 127.0.0.1 receives signed requests, talks to the
 * local Slack Web API emulator, and answers through the real chat core.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningSlackAdapter, type SlackConfig, startSlackAdapter } from '../../adapters/slack/index.js';
import {
  eventCallback,
  type MessageFields,
  mentionEvent,
  messageEvent,
  messageShortcutPayload,
  postEvent,
  postInteraction,
  postSlashCommand,
  slashCommandFields,
  type Workspace,
} from '../emulators/slack/requests.js';
import { type EmulatedFile, SlackEmulator } from '../emulators/slack/server.js';
import { type HandlerFixture, openChatHandler } from './handler-fixture.js';
import { loadTestImages, PDF_BYTES, type TestImages } from './images.js';

const BOT_TOKEN = 'xoxb-1111-2222-emulatortoken';
const SIGNING_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const MAX_IMAGE_BYTES = 600_000;
const DEMO_MARK = /Demo model/i;

let emulator: SlackEmulator;
let fixture: HandlerFixture;
let adapter: RunningSlackAdapter;
let images: TestImages;
let eventsUrl: string;
let workspace: Workspace;
const logLines: string[] = [];
const quiet = { info: () => {}, warn: () => {}, error: () => {} };
let config: SlackConfig;

let channelCounter = 0;
/** Each test talks in its own channel, so counts never mix. */
function newChannel(): string {
  channelCounter += 1;
  return `C0TEST${String(channelCounter).padStart(4, '0')}`;
}

const signed = { secret: SIGNING_SECRET };

function png(
  name: string,
  bytes: Uint8Array,
  extra: Partial<{ serve: 'file' | 'login-page'; declaredSize: number; chunked: boolean }> = {},
) {
  return emulator.addFile({
    name,
    mimetype: name.endsWith('.jpg') ? 'image/jpeg' : 'image/png',
    bytes,
    ...extra,
  });
}

async function mention(fields: Omit<MessageFields, 'ts'> & { ts?: string }, eventId?: string) {
  const ts = fields.ts ?? emulator.nextTs();
  const response = await postEvent(eventsUrl, mentionEvent(workspace, { ...fields, ts }, eventId), signed);
  expect(response.status).toBe(200);
  return { ts, response };
}

/** Waits for the thread's answer and returns its final text (queue notices are edited into the answer). */
async function answerIn(channel: string, threadTs: string, accept: (text: string) => boolean = () => true) {
  const [message] = await emulator.waitForReplies(
    channel,
    threadTs,
    1,
    (text) => !/in line/.test(text) && accept(text),
  );
  return message!;
}

beforeAll(async () => {
  images = await loadTestImages();
  emulator = await SlackEmulator.start({ botToken: BOT_TOKEN });
  workspace = { teamId: emulator.teamId, botUserId: emulator.botUserId };
  fixture = await openChatHandler({ maxImageBytes: MAX_IMAGE_BYTES });
  config = {
    botToken: BOT_TOKEN,
    mode: 'http',
    signingSecret: SIGNING_SECRET,
    port: 0,
    host: '127.0.0.1',
    apiUrl: emulator.apiUrl,
    commandName: '/describe',
    shortcutCallbackId: 'describe_image',
    shutdownGraceMs: 5000,
  };
  const remember = (line: string) => logLines.push(line);
  adapter = await startSlackAdapter({
    core: fixture.core,
    config,
    logger: { debug: remember, info: remember, warn: remember, error: remember },
  });
  eventsUrl = `http://127.0.0.1:${adapter.port}/slack/events`;
});

afterAll(async () => {
  await adapter?.stop();
  await fixture?.close();
  await emulator?.close();
});

describe('Slack adapter over HTTP (signed requests, local Web API)', () => {
  it('starts with one auth.test and listens on the chosen port', () => {
    expect(adapter.mode).toBe('http');
    expect(adapter.port).toBeGreaterThan(0);
    expect(adapter.botUserId).toBe(emulator.botUserId);
    expect(emulator.callsTo('auth.test')).toHaveLength(1);
  });

  it('answers a mention with an image and no text with one caption in its thread', async () => {
    const channel = newChannel();
    const file = png('cat.png', images.cat);
    const { ts, response } = await mention({ channel, user: 'U0ALICE', files: [file] });
    expect(response.ms).toBeLessThan(3000);

    const answer = await answerIn(channel, ts);
    await adapter.idle();
    expect(answer.text).toMatch(DEMO_MARK);
    expect(emulator.messagesIn(channel, ts)).toHaveLength(1);
    expect(emulator.messagesIn(channel, undefined)).toHaveLength(0);
    // Downloaded once, with the bot token.
    const fetches = emulator.fileFetches.filter((f) => f.fileId === file.id);
    expect(fetches).toEqual([{ fileId: file.id, authorized: true, served: 'file' }]);
    // The hourglass went on while the job ran and came off afterwards.
    const reactionCalls = emulator.calls.filter(
      (c) => c.method.startsWith('reactions.') && c.args.timestamp === ts,
    );
    expect(reactionCalls.map((c) => c.method)).toEqual(['reactions.add', 'reactions.remove']);
    expect(reactionCalls[0]!.args.name).toBe('hourglass_flowing_sand');
    expect(emulator.reactions.filter((r) => r.includes(ts))).toEqual([]);
  });

  it('answers a question in the thread the mention was in, and follow-ups there without a mention', async () => {
    const channel = newChannel();
    const parentTs = emulator.nextTs();
    const file = png('rocket.jpg', images.rocket);
    const { ts } = await mention({
      channel,
      user: 'U0BOB',
      threadTs: parentTs,
      text: 'what is this?',
      files: [file],
    });
    expect(ts).not.toBe(parentTs);
    await answerIn(channel, parentTs);

    const followUpTs = emulator.nextTs();
    const followUp = messageEvent(workspace, {
      channel,
      user: 'U0BOB',
      ts: followUpTs,
      threadTs: parentTs,
      text: 'and what colour is the sky?',
    });
    expect((await postEvent(eventsUrl, followUp, signed)).status).toBe(200);
    const replies = await emulator.waitForReplies(channel, parentTs, 2, (text) => DEMO_MARK.test(text));
    await adapter.idle();
    expect(replies).toHaveLength(2);
    // The follow-up used the conversation's image: the file was not fetched again.
    expect(emulator.fileFetches.filter((f) => f.fileId === file.id)).toHaveLength(1);

    // A new picture in the thread, still without a mention, becomes the subject.
    const next = png('coffee.png', images.coffee);
    const withPicture = messageEvent(workspace, {
      channel,
      user: 'U0BOB',
      ts: emulator.nextTs(),
      threadTs: parentTs,
      text: 'and this one?',
      files: [next],
    });
    expect((await postEvent(eventsUrl, withPicture, signed)).status).toBe(200);
    const third = await emulator.waitForReplies(channel, parentTs, 3, (text) => DEMO_MARK.test(text));
    expect(third[2]!.text).toMatch(/New picture/);
    expect(emulator.fileFetches.filter((f) => f.fileId === next.id)).toHaveLength(1);
  });

  it('answers a mention inside a thread once, though Slack sends it as app_mention and as message', async () => {
    const channel = newChannel();
    const parentTs = emulator.nextTs();
    const ts = emulator.nextTs();
    const fields = {
      channel,
      user: 'U0MIA',
      ts,
      threadTs: parentTs,
      text: 'describe this',
      files: [png('cat.png', images.cat)],
    };
    const asMessage = messageEvent(workspace, { ...fields, text: `<@${workspace.botUserId}> describe this` });
    const asMention = mentionEvent(workspace, fields);
    const [a, b] = await Promise.all([
      postEvent(eventsUrl, asMessage, signed),
      postEvent(eventsUrl, asMention, signed),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    await answerIn(channel, parentTs);
    await adapter.idle();
    expect(emulator.messagesIn(channel, parentTs)).toHaveLength(1);
  });

  it('ignores thread chatter and top-level messages that are not addressed to it', async () => {
    const channel = newChannel();
    const strangerThread = emulator.nextTs();
    const events = [
      messageEvent(workspace, {
        channel,
        user: 'U0CAROL',
        ts: emulator.nextTs(),
        threadTs: strangerThread,
        text: 'hi',
      }),
      messageEvent(workspace, { channel, user: 'U0CAROL', ts: emulator.nextTs(), text: 'lunch?' }),
      // Pictures in threads and at the top level, without a mention, are only noticed (for /describe).
      messageEvent(workspace, {
        channel,
        user: 'U0CAROL',
        ts: emulator.nextTs(),
        threadTs: strangerThread,
        text: 'look',
        files: [png('cat.png', images.cat)],
      }),
      messageEvent(workspace, {
        channel,
        user: 'U0CAROL',
        ts: emulator.nextTs(),
        files: [png('cat.png', images.cat)],
      }),
    ];
    for (const event of events) expect((await postEvent(eventsUrl, event, signed)).status).toBe(200);
    await adapter.idle();
    expect(emulator.messages.filter((m) => m.channel === channel)).toHaveLength(0);
    expect(emulator.calls.filter((c) => c.args.channel === channel)).toHaveLength(0);
  });

  it('answers the same event delivered three times (Slack retries) exactly once', async () => {
    const channel = newChannel();
    const ts = emulator.nextTs();
    const envelope = mentionEvent(workspace, {
      channel,
      user: 'U0DAN',
      ts,
      files: [png('coffee.png', images.coffee)],
    });
    const first = await postEvent(eventsUrl, envelope, signed);
    const second = await postEvent(eventsUrl, envelope, {
      ...signed,
      retryNum: 1,
      retryReason: 'http_timeout',
    });
    const third = await postEvent(eventsUrl, envelope, {
      ...signed,
      retryNum: 2,
      retryReason: 'http_timeout',
    });
    expect([first.status, second.status, third.status]).toEqual([200, 200, 200]);
    await answerIn(channel, ts);
    await adapter.idle();
    expect(emulator.messagesIn(channel, ts)).toHaveLength(1);
  });

  it('rejects a bad signature (401) and a timestamp older than five minutes, answering nothing', async () => {
    const channel = newChannel();
    const file = png('cat.png', images.cat);
    const forged = mentionEvent(workspace, { channel, user: 'U0EVE', ts: emulator.nextTs(), files: [file] });
    const bad = await postEvent(eventsUrl, forged, { ...signed, signature: `v0=${'0'.repeat(64)}` });
    expect(bad.status).toBe(401);
    const wrongSecret = await postEvent(eventsUrl, forged, { secret: 'not-the-signing-secret' });
    expect(wrongSecret.status).toBe(401);

    const stale = mentionEvent(workspace, { channel, user: 'U0EVE', ts: emulator.nextTs(), files: [file] });
    const old = await postEvent(eventsUrl, stale, {
      ...signed,
      timestamp: Math.floor(Date.now() / 1000) - 6 * 60,
    });
    expect(old.status).toBe(401);

    await adapter.idle();
    expect(emulator.messages.filter((m) => m.channel === channel)).toHaveLength(0);
    expect(emulator.fileFetches.filter((f) => f.fileId === file.id)).toHaveLength(0);
  });

  it('acknowledges /describe within 3 s and answers about the latest image in the channel', async () => {
    const channel = newChannel();
    const older = png('cat.png', images.cat);
    const newer = png('rocket.jpg', images.rocket);
    const newerTs = emulator.nextTs();
    const olderTs = `${Number(newerTs.split('.')[0]) - 100}.000100`;
    // The newer picture's event arrives first; arrival order must not decide which one is "latest".
    for (const [file, ts] of [
      [newer, newerTs],
      [older, olderTs],
    ] as const) {
      const event = messageEvent(workspace, { channel, user: 'U0FAY', ts, files: [file] });
      expect((await postEvent(eventsUrl, event, signed)).status).toBe(200);
    }
    await adapter.idle();
    expect(emulator.messages.filter((m) => m.channel === channel)).toHaveLength(0);

    const fields = {
      command: '/describe',
      text: 'what is in the picture?',
      channel,
      user: 'U0GUS',
      responseUrl: emulator.responseUrl(),
    };
    const ack = await postSlashCommand(eventsUrl, slashCommandFields(workspace, fields), signed);
    expect(ack.status).toBe(200);
    expect(ack.ms).toBeLessThan(3000);
    expect(JSON.parse(ack.body)).toMatchObject({
      response_type: 'ephemeral',
      text: expect.stringContaining('rocket.jpg'),
    });

    const answer = await answerIn(channel, newerTs);
    expect(answer.text).toMatch(DEMO_MARK);
    await adapter.idle();
    expect(emulator.fileFetches.filter((f) => f.fileId === newer.id)).toHaveLength(1);
    expect(emulator.fileFetches.filter((f) => f.fileId === older.id)).toHaveLength(0);
  });

  it('explains how to use /describe in a channel without images', async () => {
    const channel = newChannel();
    const fields = { command: '/describe', channel, user: 'U0HAL', responseUrl: emulator.responseUrl() };
    const ack = await postSlashCommand(eventsUrl, slashCommandFields(workspace, fields), signed);
    expect(ack.status).toBe(200);
    expect(ack.ms).toBeLessThan(3000);
    expect(JSON.parse(ack.body).text).toMatch(/haven't seen an image in this channel/);
    await adapter.idle();
    expect(emulator.messages.filter((m) => m.channel === channel)).toHaveLength(0);
  });

  it('answers the "Describe image" shortcut on a message with an image, and explains it on one without', async () => {
    const channel = newChannel();
    const file = png('coffee.png', images.coffee);
    const messageTs = emulator.nextTs();
    const withImage = messageShortcutPayload(workspace, {
      callbackId: 'describe_image',
      channel,
      user: 'U0IVY',
      responseUrl: emulator.responseUrl(),
      message: { channel, user: 'U0JOE', ts: messageTs, files: [file] },
    });
    const ack = await postInteraction(eventsUrl, withImage, signed);
    expect(ack.status).toBe(200);
    expect(ack.ms).toBeLessThan(3000);
    const answer = await answerIn(channel, messageTs);
    expect(answer.text).toMatch(DEMO_MARK);

    const responseUrl = emulator.responseUrl();
    const withoutImage = messageShortcutPayload(workspace, {
      callbackId: 'describe_image',
      channel,
      user: 'U0IVY',
      responseUrl,
      message: { channel, user: 'U0JOE', ts: emulator.nextTs(), text: 'just words' },
    });
    expect((await postInteraction(eventsUrl, withoutImage, signed)).status).toBe(200);
    const id = responseUrl.split('/').pop();
    const told = await emulator.waitFor(
      () => emulator.responses.find((r) => r.id === id),
      'the ephemeral reply',
    );
    expect(told.body).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/has none/) });
    await adapter.idle();
    expect(emulator.messages.filter((m) => m.channel === channel)).toHaveLength(1);
  });

  it('tells the person privately when it cannot post in the channel', async () => {
    const channel = newChannel();
    emulator.notInChannel.add(channel);
    const responseUrl = emulator.responseUrl();
    const payload = messageShortcutPayload(workspace, {
      callbackId: 'describe_image',
      channel,
      user: 'U0NED',
      responseUrl,
      message: { channel, user: 'U0NED', ts: emulator.nextTs(), files: [png('cat.png', images.cat)] },
    });
    expect((await postInteraction(eventsUrl, payload, signed)).status).toBe(200);
    const id = responseUrl.split('/').pop();
    const told = await emulator.waitFor(
      () => emulator.responses.find((r) => r.id === id),
      'the private notice',
    );
    expect(told.body).toMatchObject({
      response_type: 'ephemeral',
      text: expect.stringMatching(/not a member.*\/invite/),
    });
    await adapter.idle();
  });

  it('says so in the thread for a sign-in page, a PDF, an image that is really a PDF, a corrupt image and an oversize one, and keeps running', async () => {
    const channel = newChannel();
    const cases: { file: EmulatedFile; expected: RegExp }[] = [
      { file: png('photo.png', images.cat, { serve: 'login-page' }), expected: /sign-in page.*files:read/s },
      {
        file: emulator.addFile({ name: 'report.pdf', mimetype: 'application/pdf', bytes: PDF_BYTES }),
        expected: /not a picture/,
      },
      {
        file: emulator.addFile({ name: 'scan.png', mimetype: 'image/png', bytes: PDF_BYTES }),
        expected: /is a PDF, not an image/,
      },
      {
        file: emulator.addFile({ name: 'broken.jpg', mimetype: 'image/jpeg', bytes: images.corrupt }),
        expected: /.+/,
      },
      { file: png('huge.png', images.large, { declaredSize: 2_000_000 }), expected: /larger than/ },
      // Declares a small size but sends more: refused on Content-Length, or stopped while streaming without one.
      { file: png('liar.png', images.large, { declaredSize: 1000 }), expected: /larger than/ },
      {
        file: png('stream.png', images.large, { declaredSize: 1000, chunked: true }),
        expected: /larger than/,
      },
    ];
    const threads: string[] = [];
    for (const { file } of cases) threads.push((await mention({ channel, user: 'U0KIM', files: [file] })).ts);
    const answers = await Promise.all(threads.map((ts) => answerIn(channel, ts)));
    await adapter.idle();
    answers.forEach((answer, i) => {
      expect(answer.text).toMatch(cases[i]!.expected);
      expect(answer.text).not.toMatch(DEMO_MARK);
      expect(answer.text).not.toMatch(/something went wrong/);
    });
    // The oversize image declared as such was never fetched; the one that lied was cut off.
    expect(emulator.fileFetches.filter((f) => f.fileId === cases[4]!.file.id)).toHaveLength(0);
    // The corrupt image got a message about the image itself.
    expect(answers[3]!.text).toBe(
      "Sorry, I couldn't read that image; the file seems to be damaged. Could you send it again?",
    );

    // Still running: a good picture is answered afterwards.
    const { ts } = await mention({ channel, user: 'U0KIM', files: [png('cat.png', images.cat)] });
    expect((await answerIn(channel, ts)).text).toMatch(DEMO_MARK);
  });

  it('answers ten mentions sent at once, none lost', async () => {
    const channel = newChannel();
    const pictures = [images.cat, images.rocket, images.coffee];
    const sends = Array.from({ length: 10 }, (_, i) => {
      const ts = emulator.nextTs();
      const file = png(`picture-${i}.png`, pictures[i % pictures.length]!);
      const text = i % 2 === 0 ? '' : `question number ${i}?`;
      return { ts, envelope: mentionEvent(workspace, { channel, user: `U0P${i}`, ts, text, files: [file] }) };
    });
    const responses = await Promise.all(sends.map(({ envelope }) => postEvent(eventsUrl, envelope, signed)));
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(Math.max(...responses.map((r) => r.ms))).toBeLessThan(3000);
    const answers = await Promise.all(sends.map(({ ts }) => answerIn(channel, ts, (t) => DEMO_MARK.test(t))));
    await adapter.idle();
    expect(answers).toHaveLength(10);
    for (const { ts } of sends) expect(emulator.messagesIn(channel, ts)).toHaveLength(1);
    // The burst queued: people saw their position, and every notice was edited into the answer.
    expect(answers.some((a) => a.edits.some((text) => /in line/.test(text)))).toBe(true);
    expect(emulator.messages.filter((m) => m.channel === channel && /in line/.test(m.text))).toHaveLength(0);
  });

  it('talks in direct messages without a mention, answering at the top level', async () => {
    const channel = 'D0DIRECT01';
    const ts = emulator.nextTs();
    const file = png('cat.png', images.cat);
    const dm = messageEvent(workspace, {
      channel,
      channelType: 'im',
      user: 'U0LIV',
      ts,
      text: 'what is this?',
      files: [file],
    });
    expect((await postEvent(eventsUrl, dm, signed)).status).toBe(200);
    await emulator.waitForReplies(channel, undefined, 1, (t) => DEMO_MARK.test(t));
    const next = messageEvent(workspace, {
      channel,
      channelType: 'im',
      user: 'U0LIV',
      ts: emulator.nextTs(),
      text: 'and now?',
    });
    expect((await postEvent(eventsUrl, next, signed)).status).toBe(200);
    await emulator.waitForReplies(channel, undefined, 2, (t) => DEMO_MARK.test(t));
    await adapter.idle();
    expect(emulator.fileFetches.filter((f) => f.fileId === file.id)).toHaveLength(1);
  });

  it('never writes a token or the signing secret to the log', () => {
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      expect(line).not.toContain(BOT_TOKEN);
      expect(line).not.toContain(SIGNING_SECRET);
    }
  });

  it('refuses to start on a port in use, or with a bot token Slack rejects, saying what to change', async () => {
    const base: SlackConfig = { ...config, port: adapter.port! };
    await expect(startSlackAdapter({ core: fixture.core, config: base, logger: quiet })).rejects.toThrow(
      new RegExp(`SLACK_PORT ${adapter.port} is already in use`),
    );
    await expect(
      startSlackAdapter({
        core: fixture.core,
        config: { ...config, botToken: 'xoxb-revoked' },
        logger: quiet,
      }),
    ).rejects.toThrow(/Slack rejected SLACK_BOT_TOKEN \(invalid_auth\)/);
  });

  it('answers url_verification challenges (app setup)', async () => {
    const body = { token: 'legacy', challenge: 'challenge-abc', type: 'url_verification' };
    const response = await postEvent(eventsUrl, body, signed);
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ challenge: 'challenge-abc' });
  });

  it('skips events posted by bots (including itself)', async () => {
    const channel = newChannel();
    const ts = emulator.nextTs();
    const event = eventCallback(workspace, {
      type: 'message',
      subtype: 'bot_message',
      bot_id: 'B0OTHER',
      text: 'beep',
      ts,
      thread_ts: emulator.nextTs(),
      channel,
      channel_type: 'channel',
    });
    expect((await postEvent(eventsUrl, event, signed)).status).toBe(200);
    await adapter.idle();
    expect(emulator.messages.filter((m) => m.channel === channel)).toHaveLength(0);
  });
});
