/**
 * Publishes `/describe` to Discord: `npm run discord:register` (global; can take up to an hour to show) or with
 * DISCORD_GUILD_ID / `--guild <id>` for one server (instant). Reads the same `.env` as `blip2-bot start`.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { REST, Routes } from 'discord.js';
import { ConfigError, type DiscordConfig, loadConfig } from '../../src/config/config.js';
import { createLogger, type Logger } from '../../src/util/logger.js';
import { restBase } from './client.js';
import { commandDefinitions } from './commands.js';

export interface RegisterResult {
  scope: 'global' | { guild: string };
  names: string[];
}

/** Overwrites the application's commands with ours, in one guild when `guildId` is set, else globally. */
export async function registerCommands(config: DiscordConfig, logger?: Logger): Promise<RegisterResult> {
  const rest = new REST({
    version: '10',
    ...(config.apiUrl ? { api: restBase(config.apiUrl) } : {}),
  }).setToken(config.token);
  const appId = config.appId ?? ((await rest.get(Routes.currentApplication())) as { id: string }).id;
  const body = commandDefinitions();
  const route = config.guildId
    ? Routes.applicationGuildCommands(appId, config.guildId)
    : Routes.applicationCommands(appId);
  const saved = (await rest.put(route, { body })) as { name: string }[];
  const result: RegisterResult = {
    scope: config.guildId ? { guild: config.guildId } : 'global',
    names: saved.map((c) => c.name),
  };
  logger?.info(
    `registered ${result.names.map((n) => `/${n}`).join(', ')} ${
      config.guildId
        ? `in server ${config.guildId} (available now)`
        : 'globally (may take up to an hour to appear)'
    }`,
  );
  return result;
}

const USAGE = `Usage: npm run discord:register [-- --guild <server id> | --global]

Registers /describe for the bot in DISCORD_TOKEN's application. DISCORD_GUILD_ID (or --guild) registers it in one
server, where it shows up at once; otherwise it is registered globally.`;

export async function main(argv: string[]): Promise<number> {
  let values: { guild?: string; global?: boolean; help?: boolean };
  try {
    values = parseArgs({
      args: argv,
      options: {
        guild: { type: 'string' },
        global: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }
  if (!config.discord) {
    console.error(
      'DISCORD_TOKEN is not set. Put the bot token in .env (see .env.example and "Run it on Discord" in README.md).',
    );
    return 2;
  }
  const discord: DiscordConfig = { ...config.discord };
  if (values.guild) discord.guildId = values.guild;
  if (values.global) delete discord.guildId;
  const logger = createLogger({ level: config.logLevel, secrets: config.secrets });
  try {
    await registerCommands(discord, logger);
    return 0;
  } catch (err) {
    logger.error('registering the commands failed', err);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
