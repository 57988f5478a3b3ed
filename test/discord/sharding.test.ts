/** DISCORD_SHARDS: discord.js' own sharding against the emulator, which routes each server to one shard. */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_NOTICE } from '../../src/chat/messages.js';
import { parseConfig } from '../../src/config/config.js';
import { type EngineFixture, openTestEngine } from '../chat/engine-fixture.js';
import { pngBytes } from '../chat/images.js';
import { DiscordEmulator } from '../emulators/discord/emulator.js';
import { shardOf } from '../emulators/discord/gateway.js';
import { startTestBot, type TestBot } from './harness.js';

let engine: EngineFixture;
let bot: TestBot | undefined;
const emulators: DiscordEmulator[] = [];

beforeAll(async () => {
  engine = await openTestEngine();
});
afterEach(async (context) => {
  if (context.task.result?.state === 'fail' && bot) console.log(bot.logs.join('\n'));
  await bot?.stop();
  bot = undefined;
  for (const e of emulators.splice(0)) await e.stop();
});
afterAll(async () => {
  await engine.close();
});

async function mentionAnswered(emulator: DiscordEmulator, seed: number): Promise<void> {
  const source = emulator.userMessage({
    channelId: emulator.channels.general.id,
    mention: true,
    content: 'what is this?',
    attachments: [{ name: 'p.png', contentType: 'image/png', bytes: await pngBytes(seed) }],
  });
  const thread = await emulator.waitFor('thread', () => emulator.thread(source.id));
  await emulator.waitFor('answer', () =>
    emulator.botMessages(thread.id).find((m) => m.content.includes(DEMO_NOTICE)),
  );
}

describe('Discord sharding (DISCORD_SHARDS)', () => {
  it('reads DISCORD_SHARDS as auto or a number of shards', () => {
    expect(parseConfig({ DISCORD_TOKEN: 't'.repeat(30) }, '/').discord?.shards).toBeUndefined();
    expect(parseConfig({ DISCORD_TOKEN: 't'.repeat(30), DISCORD_SHARDS: 'auto' }, '/').discord?.shards).toBe(
      'auto',
    );
    expect(parseConfig({ DISCORD_TOKEN: 't'.repeat(30), DISCORD_SHARDS: '2' }, '/').discord?.shards).toBe(2);
    expect(() => parseConfig({ DISCORD_TOKEN: 't'.repeat(30), DISCORD_SHARDS: 'two' }, '/')).toThrow(
      /DISCORD_SHARDS=two must be a whole number/,
    );
  });

  it('with two shards, identifies each and answers the server on its shard and DMs on shard 0, once each', async () => {
    const emulator = await DiscordEmulator.start();
    emulators.push(emulator);
    bot = await startTestBot(emulator, { sharedEngine: engine, discord: { shards: 2 } });
    expect(emulator.gatewayIdentifies.map((i) => i.shard).sort()).toEqual([
      [0, 2],
      [1, 2],
    ]);
    expect(bot.adapter.client.ws.shards.size).toBe(2);
    expect(bot.logs.join('\n')).toMatch(/\(1 server\(s\), 2 shards\)/);
    // The server's events reach only the shard Discord routes it to, and the bot answers once.
    const home = shardOf(emulator.guildId, 2);
    expect(bot.adapter.client.guilds.cache.get(emulator.guildId)?.shardId).toBe(home);
    await mentionAnswered(emulator, 1);
    expect(bot.engine.requests).toHaveLength(1);
    emulator.userMessage({ channelId: emulator.channels.dm.id, content: 'hello?' });
    await emulator.waitFor('DM reply', () => emulator.botMessages(emulator.channels.dm.id).length > 0);
    expect(emulator.botMessages(emulator.channels.dm.id)).toHaveLength(1);
  }, 60_000);

  it("with auto, runs as many shards as Discord's /gateway/bot recommends", async () => {
    const emulator = await DiscordEmulator.start({ recommendedShards: 2 });
    emulators.push(emulator);
    bot = await startTestBot(emulator, { sharedEngine: engine, discord: { shards: 'auto' } });
    expect(emulator.gatewayIdentifies.map((i) => i.shard).sort()).toEqual([
      [0, 2],
      [1, 2],
    ]);
    await mentionAnswered(emulator, 2);
  }, 60_000);
});
