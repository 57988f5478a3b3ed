/**
 * A Slack front SIGKILLed while its answer is owed (issue 12, deliverable 4): fronts in Socket Mode on the Slack
 * emulator and a worker, as processes on a real redis-server. The next front posts the answer in the thread of
 * the person's message, once, and takes the dead front's hourglass away.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BotProcess, spawnBot, stopChild, waitReady } from '../../bench/load-run.js';
import { messages } from '../../src/chat/messages.js';
import { KEY_PREFIX, QUEUE_NAME, redisOptions } from '../../src/scale/redis.js';
import { mentionEvent } from '../emulators/slack/requests.js';
import { SlackEmulator } from '../emulators/slack/server.js';
import {
  HAS_REDIS,
  openRedis,
  owedAfterSweep,
  queuedOwed,
  REDIS_SKIP_REASON,
} from '../scale/redis-fixture.js';
import { loadTestImages } from './images.js';

const BOT_TOKEN = 'xoxb-3333-4444-frontkilltoken';
const APP_TOKEN = 'xapp-1-A0EMULATOR-5555-frontkilltoken';

describe.skipIf(!HAS_REDIS)('Slack: a front killed outright', () => {
  let server: Awaited<ReturnType<typeof openRedis>>;
  let redis: Redis;
  let queue: Queue;
  let emulator: SlackEmulator;
  const work = mkdtempSync(join(tmpdir(), 'blip2-slack-kill-'));
  const bots: BotProcess[] = [];

  const spawn = async (args: string[], env: Record<string, string> = {}) => {
    const bot = await spawnBot(
      args,
      { QUEUE_URL: server.url, SHUTDOWN_GRACE_SECONDS: '5', FRONT_HEARTBEAT_SECONDS: '1', ...env },
      work,
    );
    bots.push(bot);
    await waitReady(bot);
    return bot;
  };
  const front = () =>
    spawn(['start', '--role', 'front'], {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_APP_TOKEN: APP_TOKEN,
      SLACK_API_URL: emulator.apiUrl,
    });

  beforeAll(async () => {
    server = await openRedis();
    redis = new Redis(redisOptions(server.url));
    queue = new Queue(QUEUE_NAME, { connection: redisOptions(server.url), prefix: KEY_PREFIX });
    emulator = await SlackEmulator.start({ botToken: BOT_TOKEN, appToken: APP_TOKEN });
  });

  afterAll(async () => {
    await Promise.all(bots.map((b) => stopChild(b.child, 10_000)));
    await queue?.close();
    redis?.disconnect();
    await emulator?.close();
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('posts the answer once in the thread, and takes the hourglass away', async () => {
    await spawn(['worker']);
    const a = await front();
    await emulator.waitFor(() => emulator.socketConnections === 1, "front A's socket");
    // The queue is paused while the front dies, so its job surely has not ended by then.
    await queue.pause();
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
    expect(await queuedOwed(redis, 1)).toBe(1);
    await emulator.waitFor(
      () => emulator.reactions.some((r) => r.endsWith(`${ts}/hourglass_flowing_sand`)),
      'the hourglass',
    );
    a.child.kill('SIGKILL');
    await emulator.waitFor(() => emulator.socketConnections === 0, "front A's socket to close");

    await front();
    await queue.resume();
    const [answer] = await emulator.waitForReplies(channel, ts, 1, (text) =>
      text.startsWith(messages.resumed),
    );
    // The answer itself follows the line that says what happened.
    expect(answer!.text.split('\n').slice(1).join('\n')).toMatch(/Demo model/);
    expect(emulator.reactions.filter((r) => r.includes(ts))).toEqual([]);
    // Handed on, then cleared.
    expect(await owedAfterSweep(redis)).toBe(0);
    // Several sweeps later, still once.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(emulator.messagesIn(channel, ts).filter((m) => m.text.startsWith(messages.resumed))).toHaveLength(
      1,
    );
  }, 120_000);
});

describe.skipIf(HAS_REDIS)('Slack: a front killed outright (skipped)', () => {
  it.skip(REDIS_SKIP_REASON, () => {});
});
