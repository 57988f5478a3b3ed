/**
 * Socket Mode, the default for local use: the real Bolt app opens apps.connections.open on the emulator, connects
 * to its WebSocket, acknowledges envelopes and answers through the Web API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningSlackAdapter, startSlackAdapter } from '../../adapters/slack/index.js';
import {
  mentionEvent,
  messageEvent,
  slashCommandFields,
  type Workspace,
} from '../emulators/slack/requests.js';
import { SlackEmulator } from '../emulators/slack/server.js';
import { type HandlerFixture, openChatHandler } from './handler-fixture.js';
import { loadTestImages, type TestImages } from './images.js';

const BOT_TOKEN = 'xoxb-3333-4444-sockettoken';
const APP_TOKEN = 'xapp-1-A0EMULATOR-5555-appleveltoken';
const DEMO_MARK = /Demo model/i;

let emulator: SlackEmulator;
let fixture: HandlerFixture;
let adapter: RunningSlackAdapter | undefined;
let images: TestImages;
let workspace: Workspace;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

beforeAll(async () => {
  images = await loadTestImages();
  emulator = await SlackEmulator.start({ botToken: BOT_TOKEN, appToken: APP_TOKEN });
  workspace = { teamId: emulator.teamId, botUserId: emulator.botUserId };
  fixture = await openChatHandler();
});

afterAll(async () => {
  await adapter?.stop();
  await fixture?.close();
  await emulator?.close();
});

describe('Slack adapter in Socket Mode', () => {
  const config = () => ({
    botToken: BOT_TOKEN,
    mode: 'socket' as const,
    appToken: APP_TOKEN,
    port: 3000,
    apiUrl: emulator.apiUrl,
    commandName: '/describe',
    shortcutCallbackId: 'describe_image',
    shutdownGraceMs: 5000,
  });

  it('refuses to start with an app token Slack rejects, saying which one', async () => {
    await expect(
      startSlackAdapter({
        core: fixture.core,
        config: { ...config(), appToken: 'xapp-1-wrong' },
        logger: quiet,
      }),
    ).rejects.toThrow(/SLACK_APP_TOKEN \(invalid_auth\)/);
    await expect(
      startSlackAdapter({
        core: fixture.core,
        config: { ...config(), botToken: 'xoxb-wrong' },
        logger: quiet,
      }),
    ).rejects.toThrow(/SLACK_BOT_TOKEN \(invalid_auth\)/);
    expect(emulator.socketConnections).toBe(0);
  });

  it('connects, answers a mention and a follow-up, and acknowledges /describe over the socket', async () => {
    adapter = await startSlackAdapter({ core: fixture.core, config: config(), logger: quiet });
    expect(adapter.mode).toBe('socket');
    expect(adapter.port).toBeUndefined();
    await emulator.waitFor(() => emulator.socketConnections === 1, 'the Socket Mode connection');

    const channel = 'C0SOCKET01';
    const ts = emulator.nextTs();
    const file = emulator.addFile({ name: 'cat.png', mimetype: 'image/png', bytes: images.cat });
    const mention = mentionEvent(workspace, { channel, user: 'U0SAM', ts, files: [file] });
    const started = performance.now();
    await emulator.sendEnvelope('events_api', mention);
    expect(performance.now() - started).toBeLessThan(3000);
    // A redelivery of the same envelope payload (Slack's retry) is acknowledged and not answered again.
    await emulator.sendEnvelope('events_api', mention, { retryAttempt: 1, retryReason: 'timeout' });
    await emulator.waitForReplies(channel, ts, 1, (text) => DEMO_MARK.test(text));

    const followUp = messageEvent(workspace, {
      channel,
      user: 'U0SAM',
      ts: emulator.nextTs(),
      threadTs: ts,
      text: 'why?',
    });
    await emulator.sendEnvelope('events_api', followUp);
    await emulator.waitForReplies(channel, ts, 2, (text) => DEMO_MARK.test(text));

    const ack = (await emulator.sendEnvelope(
      'slash_commands',
      slashCommandFields(workspace, {
        command: '/describe',
        channel,
        user: 'U0SAM',
        responseUrl: emulator.responseUrl(),
      }),
    )) as { text?: string };
    expect(ack.text).toMatch(/cat\.png/);
    await emulator.waitForReplies(channel, ts, 3, (text) => DEMO_MARK.test(text));
    await adapter.idle();
    expect(emulator.messagesIn(channel, ts)).toHaveLength(3);

    await adapter.stop();
    await emulator.waitFor(() => emulator.socketConnections === 0, 'the socket to close');
  });

  it('honours Retry-After on 429s without adding its own backoff (item 11)', async () => {
    adapter = await startSlackAdapter({ core: fixture.core, config: config(), logger: quiet });
    await emulator.waitFor(() => emulator.socketConnections === 1, 'the Socket Mode connection');
    const channel = 'C0SOCKET02';
    const ts = emulator.nextTs();
    const file = emulator.addFile({ name: 'cat.png', mimetype: 'image/png', bytes: images.cat });
    const before = emulator.callsTo('chat.postMessage').length;
    emulator.rateLimits.set('chat.postMessage', { times: 3, retryAfter: 1 });
    await emulator.sendEnvelope(
      'events_api',
      mentionEvent(workspace, { channel, user: 'U0SAM', ts, files: [file] }),
    );
    await emulator.waitForReplies(channel, ts, 1, (text) => DEMO_MARK.test(text));
    const posts = emulator.callsTo('chat.postMessage').slice(before);
    expect(posts.length).toBeGreaterThanOrEqual(4);
    // Three waits of Retry-After (1 s each) and nothing more; the client's own backoff made this 20 s or more.
    const waited = posts[3]!.at - posts[0]!.at;
    expect(waited).toBeGreaterThanOrEqual(2900);
    expect(waited).toBeLessThan(5000);
    await adapter.stop();
    await emulator.waitFor(() => emulator.socketConnections === 0, 'the socket to close');
  });

  it('/describe checks the allow-list before its ack, refuses privately, and escapes file names (items 9, 12)', async () => {
    const channel = 'C0OUTSIDE';
    const describe = async (core: HandlerFixture['core']) => {
      adapter = await startSlackAdapter({ core, config: config(), logger: quiet });
      await emulator.waitFor(() => emulator.socketConnections === 1, 'the Socket Mode connection');
      const ts = emulator.nextTs();
      const file = emulator.addFile({ name: '<!channel>.png', mimetype: 'image/png', bytes: images.cat });
      await emulator.sendEnvelope(
        'events_api',
        messageEvent(workspace, { channel, user: 'U0SAM', ts, files: [file] }),
      );
      const ack = (await emulator.sendEnvelope(
        'slash_commands',
        slashCommandFields(workspace, {
          command: '/describe',
          channel,
          user: 'U0SAM',
          responseUrl: emulator.responseUrl(),
        }),
      )) as { text?: string; response_type?: string } | undefined;
      await adapter.idle();
      await adapter.stop();
      await emulator.waitFor(() => emulator.socketConnections === 0, 'the socket to close');
      return { ack, ts };
    };
    const allowList = { servers: [], channels: ['C0ELSEWHERE'], users: [] };
    for (const mode of ['tell', 'ignore'] as const) {
      const outsider = await openChatHandler({ allowList: { ...allowList, mode } });
      try {
        const before = emulator.callsTo('chat.postMessage').length;
        const { ack } = await describe(outsider.core);
        if (mode === 'tell')
          expect(ack).toMatchObject({ response_type: 'ephemeral', text: "Sorry, I'm not enabled here." });
        else expect(ack?.text ?? '').toBe('');
        // Nothing promised, nothing posted publicly.
        expect(ack?.text ?? '').not.toMatch(/Looking at/);
        expect(emulator.callsTo('chat.postMessage').length).toBe(before);
      } finally {
        await outsider.close();
      }
    }
    const { ack, ts } = await describe(fixture.core);
    expect(ack?.text).toContain('"&lt;!channel&gt;.png"');
    expect(ack?.text).not.toContain('<!channel>');
    await emulator.waitForReplies(channel, ts, 1, (text) => DEMO_MARK.test(text));
  });

  it('a repeated /describe on the same picture does not download it again (item 12)', async () => {
    adapter = await startSlackAdapter({ core: fixture.core, config: config(), logger: quiet });
    await emulator.waitFor(() => emulator.socketConnections === 1, 'the Socket Mode connection');
    const channel = 'C0AGAIN';
    const ts = emulator.nextTs();
    const file = emulator.addFile({ name: 'again.png', mimetype: 'image/png', bytes: images.cat });
    await emulator.sendEnvelope(
      'events_api',
      messageEvent(workspace, { channel, user: 'U0SAM', ts, files: [file] }),
    );
    const describe = (text: string) =>
      emulator.sendEnvelope(
        'slash_commands',
        slashCommandFields(workspace, {
          command: '/describe',
          text,
          channel,
          user: 'U0SAM',
          responseUrl: emulator.responseUrl(),
        }),
      );
    const fetchesBefore = emulator.fileFetches.length;
    await describe('');
    await emulator.waitForReplies(channel, ts, 1, (text) => DEMO_MARK.test(text));
    await adapter.idle();
    const fetchesAfterFirst = emulator.fileFetches.length;
    expect(fetchesAfterFirst).toBeGreaterThan(fetchesBefore);
    await describe('what colour is it?');
    await emulator.waitForReplies(channel, ts, 2, (text) => DEMO_MARK.test(text));
    await adapter.idle();
    expect(emulator.fileFetches.length).toBe(fetchesAfterFirst);
    await adapter.stop();
    await emulator.waitFor(() => emulator.socketConnections === 0, 'the socket to close');
  });
});
