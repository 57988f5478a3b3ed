import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCommands } from '../../adapters/discord/register-commands.js';
import { DiscordEmulator } from '../emulators/discord/emulator.js';
import { ROOT } from '../helpers/shared.js';

let emulator: DiscordEmulator;

beforeAll(async () => {
  emulator = await DiscordEmulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

describe('discord:register', () => {
  it('registers /describe globally, with the image required and the question optional', async () => {
    const result = await registerCommands({ token: emulator.token, apiUrl: emulator.apiUrl });
    expect(result).toEqual({ scope: 'global', names: ['describe'] });
    const [command] = emulator.commands.get('global') as {
      name: string;
      options: { name: string; type: number; required?: boolean }[];
    }[];
    expect(command!.options.map((o) => [o.name, o.type, o.required ?? false])).toEqual([
      ['image', 11, true],
      ['question', 3, false],
    ]);
    expect(emulator.requests.some((r) => r.path === '/applications/@me')).toBe(true);
  });

  it('runs as `npm run discord:register` for one guild, reading the environment', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'blip2-register-'));
    try {
      // Asynchronous: the emulator answering the script lives in this process.
      const run = await promisify(execFile)(
        process.execPath,
        // What `npm run discord:register` runs, from a directory without a .env so only this environment counts.
        [
          '--import',
          pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href,
          join(ROOT, 'adapters/discord/register-commands.ts'),
        ],
        {
          cwd,
          timeout: 60_000,
          env: {
            PATH: process.env.PATH,
            DISCORD_TOKEN: emulator.token,
            DISCORD_API_URL: emulator.apiUrl,
            DISCORD_APP_ID: emulator.appId,
            DISCORD_GUILD_ID: emulator.guildId,
          },
        },
      );
      expect(run.stderr).toContain(`registered /describe in server ${emulator.guildId}`);
      expect(emulator.commands.get(emulator.guildId)).toHaveLength(1);
      expect(run.stderr).not.toContain(emulator.token);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
