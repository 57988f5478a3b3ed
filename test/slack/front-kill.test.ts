/**
 * A Slack front SIGKILLed while its answer is owed (issue 12, deliverable 4): fronts in Socket Mode on the Slack
 * emulator and a worker, as processes on a real redis-server. The next front posts the answer in the thread of
 * the person's message, once, and takes the dead front's hourglass away.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages } from '../../src/chat/messages.js';
import { mentionEvent } from '../emulators/slack/requests.js';
import { SlackEmulator } from '../emulators/slack/server.js';
import {
  type BotCluster,
  HAS_REDIS,
  openBotCluster,
  owedAfterSweep,
  owedWithNotice,
  queuedOwed,
  REDIS_SKIP_REASON,
} from '../scale/redis-fixture.js';
import { loadTestImages } from './images.js';

const BOT_TOKEN = 'xoxb-3333-4444-frontkilltoken';
const APP_TOKEN = 'xapp-1-A0EMULATOR-5555-frontkilltoken';

describe.skipIf(!HAS_REDIS)('Slack: a front killed outright', () => {
  let cluster: BotCluster;
  let emulator: SlackEmulator;

  const spawn = (args: string[], env: Record<string, string> = {}) =>
    cluster.spawn(args, { FRONT_HEARTBEAT_SECONDS: '1', ...env });
  const front = () =>
    spawn(['start', '--role', 'front'], {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_APP_TOKEN: APP_TOKEN,
      SLACK_API_URL: emulator.apiUrl,
    });

  beforeAll(async () => {
    cluster = await openBotCluster();
    emulator = await SlackEmulator.start({ botToken: BOT_TOKEN, appToken: APP_TOKEN });
  });

  afterAll(async () => {
    await cluster?.close();
    await emulator?.close();
  });

  it('posts the answer once in the thread, and takes the hourglass away', async () => {
    await spawn(['worker']);
    const a = await front();
    await emulator.waitFor(() => emulator.socketConnections === 1, "front A's socket");
    // The queue is paused while the front dies, so its job surely has not ended by then.
    await cluster.queue.pause();
    const channel = 'C0FRONTKILL';
    const ts = emulator.nextTs();
    const file = emulator.addFile({
      name: 'cat.png',
      mimetype: 'image/png',
      bytes: (await loadTestImages()).cat,
    });
    const workspace = { teamId: emulator.teamId, botUserId: emulator.botUserId };
    await emulator.sendEnvelope(
      'events_api',
      mentionEvent(workspace, { channel, user: 'U0SAM', ts, files: [file], text: 'what is it?' }),
    );
    expect(await queuedOwed(cluster.redis, 1)).toBe(1);
    // It waits in line and hears so; the front records where it said it.
    expect(await owedWithNotice(cluster.redis, 1)).toBe(1);
    await emulator.waitFor(
      () => emulator.reactions.some((r) => r.endsWith(`${ts}/hourglass_flowing_sand`)),
      'the hourglass',
    );
    a.child.kill('SIGKILL');
    await emulator.waitFor(() => emulator.socketConnections === 0, "front A's socket to close");

    await front();
    await cluster.queue.resume();
    const [answer] = await emulator.waitForReplies(channel, ts, 1, (text) =>
      text.startsWith(messages.resumed),
    );
    // The answer itself follows the line that says what happened.
    expect(answer!.text.split('\n').slice(1).join('\n')).toMatch(/Demo model/);
    expect(emulator.reactions.filter((r) => r.includes(ts))).toEqual([]);
    // Handed on, then cleared.
    expect(await owedAfterSweep(cluster.redis)).toBe(0);
    // Several sweeps later, still once, and it is the dead front's "you're next in line" notice edited into the
    // answer: no stale notice left above it.
    await new Promise((r) => setTimeout(r, 1_500));
    const posted = emulator.messagesIn(channel, ts);
    expect(posted).toHaveLength(1);
    expect(posted[0]!.text.startsWith(messages.resumed)).toBe(true);
    expect(posted[0]!.edits).toEqual([messages.queued(1)]);
  }, 120_000);
});

describe.skipIf(HAS_REDIS)('Slack: a front killed outright (skipped)', () => {
  it.skip(REDIS_SKIP_REASON, () => {});
});
