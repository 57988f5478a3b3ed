/** Builds the discord.js client the adapter uses, pointed at DISCORD_API_URL when one is configured. */
import { Client, GatewayIntentBits, Partials } from 'discord.js';
import type { DiscordConfig } from '../../src/config/config.js';

/** discord.js wants the REST base without the version segment (`https://discord.com/api`). */
export function restBase(apiUrl: string): string {
  return apiUrl.replace(/\/+$/, '').replace(/\/v\d+$/, '');
}

export function createDiscordClient(config: DiscordConfig, options: { messageContent: boolean }): Client {
  const intents = [
    GatewayIntentBits.Guilds,
    GatewayIntentBits.GuildMessages,
    GatewayIntentBits.DirectMessages,
  ];
  if (options.messageContent) intents.push(GatewayIntentBits.MessageContent);
  return new Client({
    intents,
    // DM channels are not cached up front; without this partial their messages would be dropped.
    partials: [Partials.Channel],
    // Model output must never ping anyone (@everyone, roles, users).
    allowedMentions: { parse: [], repliedUser: false },
    ...(config.apiUrl ? { rest: { api: restBase(config.apiUrl) } } : {}),
    // discord.js' own sharding: one gateway connection per shard, Discord routing each server to one of them.
    ...(config.shards === 'auto'
      ? { shards: 'auto' as const }
      : config.shards
        ? { shards: Array.from({ length: config.shards }, (_, i) => i), shardCount: config.shards }
        : {}),
  });
}
