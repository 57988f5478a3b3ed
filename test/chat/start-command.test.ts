import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_NOTICE } from '../../src/chat/messages.js';
import { startCommand } from '../../src/cli/commands/start.js';
import { DiscordEmulator } from '../emulators/discord/emulator.js';
import { pngBytes } from './images.js';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'blip2-start-'));
  mkdirSync(join(dir, 'no-model'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk) => {
    text += chunk.toString();
  });
  return { stream, text: () => text };
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const baseEnv = () => ({
  BLIP2_MODEL_DIR: join(dir, 'no-model'),
  BLIP2_DATA_DIR: join(dir, 'data'),
  LOG_LEVEL: 'warn',
});

describe('blip2-bot start', () => {
  it('exits with 2 and names every bad variable', async () => {
    const err = capture();
    const code = await startCommand([], {
      env: { RATE_LIMIT_PER_MINUTE: 'lots', DISCORD_API_URL: 'not a url', CACHE_STORE: 'floppy' },
      cwd: dir,
      stderr: err.stream,
    });
    expect(code).toBe(2);
    expect(err.text()).toContain('RATE_LIMIT_PER_MINUTE=lots must be a whole number');
    expect(err.text()).toContain('DISCORD_API_URL must be a http: or https: URL');
    expect(err.text()).toContain('CACHE_STORE=floppy must be one of: sqlite, memory, redis');
  });

  it('without tokens and without a terminal, runs the web playground, prints its URL and keeps running', async () => {
    const out = capture();
    const err = capture();
    const stop = new AbortController();
    let names: string[] = [];
    const running = startCommand([], {
      env: { ...baseEnv(), WEB_PORT: '0' },
      cwd: dir,
      stdin: Object.assign(new PassThrough(), { isTTY: false }),
      stdout: out.stream,
      stderr: err.stream,
      signal: stop.signal,
      onReady: ({ adapters }) => {
        names = adapters.map((a) => a.name);
      },
    });
    await until('the URL', () => /Web playground and API: http:\/\/127\.0\.0\.1:\d+\//.test(out.text()));
    expect(names).toEqual(['web']);
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out.text())![1]!;
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('blip2-bot playground');
    const body = new FormData();
    body.append('image', new Blob([await pngBytes(5)], { type: 'image/png' }), 'a.png');
    const answer = (await (await fetch(`${url}api/v1/conversations`, { method: 'POST', body })).json()) as {
      demo: boolean;
      answer: { text: unknown };
    };
    expect(answer.demo).toBe(true);
    expect(typeof answer.answer.text).toBe('string');
    expect(err.text()).toContain('DISCORD_TOKEN');
    expect(err.text()).toContain('SLACK_BOT_TOKEN');
    expect(err.text()).toContain('Running the DEMO model');
    stop.abort();
    expect(await running).toBe(0);
    expect((await fetch(url).catch((e: Error) => e)) instanceof Error).toBe(true);
  });

  it('refuses to start the web on another interface without WEB_API_KEY', async () => {
    const err = capture();
    const code = await startCommand([], {
      env: { ...baseEnv(), WEB_HOST: '0.0.0.0' },
      cwd: dir,
      stderr: err.stream,
    });
    expect(code).toBe(2);
    expect(err.text()).toContain('WEB_API_KEY must be set');
  });

  it('with --local on a terminal, also runs the terminal chat beside the web', async () => {
    const picture = join(dir, 'pic.png');
    writeFileSync(picture, await pngBytes(3));
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    const out = capture();
    const err = capture();
    let names: string[] = [];
    const running = startCommand(['--local'], {
      env: { ...baseEnv(), WEB_PORT: '0' },
      cwd: dir,
      stdin,
      stdout: out.stream,
      stderr: err.stream,
      onReady: ({ adapters }) => {
        names = adapters.map((a) => a.name);
      },
    });
    stdin.write(`/image ${picture}\n`);
    await until('the caption', () => out.text().includes(DEMO_NOTICE));
    expect(names).toEqual(['web', 'local']);
    stdin.write('/quit\n');
    expect(await running).toBe(0);
    expect(err.text()).toContain('No chat platform is configured');
  });

  it('with DISCORD_TOKEN and WEB_PORT, runs the web beside Discord', async () => {
    const emulator = await DiscordEmulator.start();
    try {
      const stop = new AbortController();
      let names: string[] | undefined;
      const out = capture();
      const running = startCommand([], {
        env: { ...baseEnv(), DISCORD_TOKEN: emulator.token, DISCORD_API_URL: emulator.apiUrl, WEB_PORT: '0' },
        cwd: dir,
        stdin: Object.assign(new PassThrough(), { isTTY: false }),
        stdout: out.stream,
        stderr: capture().stream,
        signal: stop.signal,
        onReady: ({ adapters }) => {
          names = adapters.map((a) => a.name);
        },
      });
      await until('the bot to start', () => names !== undefined);
      expect(names).toEqual(['discord', 'web']);
      const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out.text())![1]!;
      const health = (await (await fetch(`${url}api/v1/health`)).json()) as { status: string };
      expect(health.status).toBe('ok');
      stop.abort();
      expect(await running).toBe(0);
    } finally {
      await emulator.stop();
    }
  });

  it('stops in order and exits non-zero when Discord closes the session for good (item 7)', async () => {
    for (const [code, explanation] of [
      [4004, /DISCORD_TOKEN is no longer valid \(4004/],
      [4014, /Message Content intent is no longer allowed \(4014\)/],
    ] as const) {
      const emulator = await DiscordEmulator.start();
      try {
        let ready = false;
        const err = capture();
        const running = startCommand([], {
          env: {
            ...baseEnv(),
            DISCORD_TOKEN: emulator.token,
            DISCORD_API_URL: emulator.apiUrl,
            LOG_LEVEL: 'error',
          },
          cwd: dir,
          stdin: Object.assign(new PassThrough(), { isTTY: false }),
          stderr: err.stream,
          onReady: ({ adapters }) => {
            ready = adapters.some((a) => a.name === 'discord');
          },
        });
        await until('the bot to connect', () => ready);
        emulator.closeGateway(code);
        // Before: the process was left with an unsettled await (exit 13) or deaf on Discord for good.
        expect(await running).toBe(1);
        expect(err.text()).toMatch(explanation);
      } finally {
        await emulator.stop();
      }
    }
  });

  it('with DISCORD_TOKEN, answers on Discord (through DISCORD_API_URL) and stops cleanly', async () => {
    const emulator = await DiscordEmulator.start();
    try {
      const stop = new AbortController();
      let ready = false;
      const err = capture();
      const running = startCommand([], {
        env: { ...baseEnv(), DISCORD_TOKEN: emulator.token, DISCORD_API_URL: emulator.apiUrl },
        cwd: dir,
        stdin: Object.assign(new PassThrough(), { isTTY: false }),
        stderr: err.stream,
        signal: stop.signal,
        onReady: ({ adapters }) => {
          ready = adapters.some((a) => a.name === 'discord');
          // With platform credentials the web runs only when WEB_PORT is set.
          expect(adapters.map((a) => a.name)).toEqual(['discord']);
        },
      });
      await until('the bot to connect', () => ready);
      const source = emulator.userMessage({
        channelId: emulator.channels.general.id,
        mention: true,
        content: 'what is this?',
        attachments: [{ name: 'a.png', contentType: 'image/png', bytes: await pngBytes(4) }],
      });
      await emulator.waitFor(
        'the answer',
        () => emulator.botMessages(source.id).find((m) => m.content.includes(DEMO_NOTICE)),
        20_000,
      );
      stop.abort();
      expect(await running).toBe(0);
      expect(err.text()).not.toContain(emulator.token);
    } finally {
      await emulator.stop();
    }
  });
});
