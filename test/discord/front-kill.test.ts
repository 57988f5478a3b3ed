/**
 * A Discord front SIGKILLed while its jobs are owed (issue 12, deliverable 4): fronts and workers as processes
 * (`blip2-bot start --role front` on the local Discord emulator, `blip2-bot worker`) on a real redis-server. The
 * front started after the kill posts the answer where the dead one would have (the thread it opens on the
 * person's message), once, and tells the person whose picture turned out damaged instead of leaving silence.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_NOTICE, messages } from '../../src/chat/messages.js';
import { corruptJpegBytes, pngBytes } from '../chat/images.js';
import { DiscordEmulator } from '../emulators/discord/emulator.js';
import {
  type BotCluster,
  HAS_REDIS,
  openBotCluster,
  owedAfterSweep,
  owedWithNotice,
  queuedOwed,
  REDIS_SKIP_REASON,
} from '../scale/redis-fixture.js';

describe.skipIf(!HAS_REDIS)('Discord: a front killed outright', () => {
  let cluster: BotCluster;
  let emulator: DiscordEmulator;

  const spawn = (args: string[], env: Record<string, string> = {}) =>
    cluster.spawn(args, {
      FRONT_HEARTBEAT_SECONDS: '1',
      REQUEST_TIMEOUT_SECONDS: '60',
      LOG_LEVEL: 'info',
      ...env,
    });
  const front = () =>
    spawn(['start', '--role', 'front'], { DISCORD_TOKEN: emulator.token, DISCORD_API_URL: emulator.apiUrl });

  beforeAll(async () => {
    cluster = await openBotCluster();
    emulator = await DiscordEmulator.start();
  });

  afterAll(async () => {
    await cluster?.close();
    await emulator?.stop();
  });

  it('posts the answers once where the dead front would have (thread, /describe reply), and explains a damaged picture', async () => {
    await spawn(['worker']);
    const a = await front();
    // The queue is paused while the front dies, so its jobs surely have not ended by then.
    await cluster.queue.pause();

    const general = emulator.channels.general.id;
    const photo = emulator.userMessage({
      channelId: general,
      mention: true,
      content: 'what is in this picture?',
      attachments: [{ name: 'cat.png', contentType: 'image/png', bytes: await pngBytes(501) }],
    });
    const damaged = emulator.userMessage({
      channelId: emulator.channels.noThreads.id,
      mention: true,
      attachments: [{ name: 'broken.jpg', contentType: 'image/jpeg', bytes: await corruptJpegBytes() }],
    });
    const command = emulator.slashCommand({
      channelId: general,
      attachment: { name: 'dog.png', contentType: 'image/png', bytes: await pngBytes(502) },
      question: 'is there a dog?',
    });
    expect(await queuedOwed(cluster.redis, 3)).toBe(3);
    // Each waits in line and hears so; the front records where it said it.
    expect(await owedWithNotice(cluster.redis, 3)).toBe(3);
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));

    await front();
    await cluster.queue.resume();
    const thread = await emulator.waitFor(
      'the thread on the message',
      () => emulator.thread(photo.id),
      30_000,
    );
    const answer = await emulator.waitFor(
      'the adopted answer',
      () => emulator.botMessages(thread.id).find((m) => m.content.includes(DEMO_NOTICE)),
      30_000,
    );
    expect(answer.content.split('\n')[0]).toBe(messages.resumed);
    const resumedIn = (channelId: string) =>
      emulator.botMessages(channelId).filter((m) => m.content.startsWith(messages.resumed));
    const told = await emulator
      .waitFor('the damaged picture explained', () => resumedIn(emulator.channels.noThreads.id)[0], 30_000)
      .catch((e) => {
        console.log(cluster.bots.map((b) => b.output.join('')).join('\n-----\n'));
        console.log(JSON.stringify(emulator.botMessages(emulator.channels.noThreads.id)));
        throw e;
      });
    expect(told.content).toBe(
      `${messages.resumed}\nSorry, I couldn't read that image; the file seems to be damaged. Could you send it again?`,
    );
    expect(told.message_reference?.message_id).toBe(damaged.id);
    // /describe: the deferred "thinking…" reply is edited into the answer through the interaction's webhook.
    await emulator.waitFor(
      'the /describe reply edited',
      () => command.original?.content.startsWith(messages.resumed),
      30_000,
    );
    expect(command.original!.content).toContain(DEMO_NOTICE);
    // ...and gets its thread for follow-ups, as a live front opens one after answering.
    await emulator.waitFor(
      'the thread on the /describe reply',
      () => emulator.thread(command.original!.id),
      30_000,
    );
    // Handed on, then cleared.
    expect(await owedAfterSweep(cluster.redis)).toBe(0);
    // Several sweeps later: one answer each, and it is the dead front's "you're #N in line" notice edited into
    // the answer (no stale notice left above it); nothing in the channel itself.
    await new Promise((r) => setTimeout(r, 1_500));
    const inLine = /in line\. ⏳$/;
    for (const channelId of [thread.id, emulator.channels.noThreads.id]) {
      const posted = emulator.botMessages(channelId);
      expect(posted).toHaveLength(1);
      expect(posted[0]!.content.startsWith(messages.resumed)).toBe(true);
      expect(posted[0]!.history[0]).toMatch(inLine);
    }
    expect(emulator.botMessages(general).map((m) => m.id)).toEqual([command.original!.id]);
    expect(command.original!.history.filter((h) => h.startsWith(messages.resumed))).toHaveLength(1);
    expect(command.original!.history.some((h) => inLine.test(h))).toBe(true);
  }, 120_000);
});

describe.skipIf(HAS_REDIS)('Discord: a front killed outright (skipped)', () => {
  it.skip(REDIS_SKIP_REASON, () => {});
});
