import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, loadConfig, parseConfig } from '../../src/config/config.js';
import { createLogger, redact } from '../../src/util/logger.js';
import { ROOT } from '../helpers/shared.js';

describe('configuration', () => {
  it('has working defaults with an empty environment', () => {
    const config = parseConfig({}, '/srv/bot');
    expect(config.modelDir).toBe('/srv/bot/models/blip2-flan-t5-xl');
    expect(config.dataDir).toBe('/srv/bot/data');
    expect(config.store).toEqual({
      kind: 'sqlite',
      sqlitePath: '/srv/bot/data/blip2-bot.sqlite',
      ttlMs: 7 * 24 * 3600 * 1000,
    });
    expect(config.discord).toBeUndefined();
    expect(config.chat.rateLimitPerMinute).toBe(6);
    expect(config.chat.allowList).toEqual({ servers: [], channels: [], users: [], mode: 'ignore' });
    expect(config.queueCapacity).toBe(20);
    expect(config.logLevel).toBe('info');
  });

  it('reads every variable', () => {
    const config = parseConfig(
      {
        BLIP2_MODEL_DIR: '/models/x',
        BLIP2_DATA_DIR: 'state',
        REDIS_URL: 'redis://cache:6379',
        CACHE_TTL_SECONDS: '0',
        DISCORD_TOKEN: 'Bot abc.def.ghi',
        DISCORD_APP_ID: '123456789012345678',
        DISCORD_API_URL: 'http://127.0.0.1:9999/api/',
        DISCORD_GUILD_ID: '223456789012345678',
        ALLOWED_SERVERS: ' 1, 2 ,,3',
        ALLOWED_CHANNELS: '9',
        ALLOWED_USERS: '',
        ALLOWLIST_MODE: 'TELL',
        RATE_LIMIT_PER_MINUTE: '0',
        QUEUE_CAPACITY: '5',
        REQUEST_TIMEOUT_SECONDS: '2.5',
        MAX_IMAGE_MB: '8',
        LOG_LEVEL: 'debug',
      },
      '/srv',
    );
    expect(config.modelDir).toBe('/models/x');
    expect(config.store).toEqual({
      kind: 'redis',
      sqlitePath: '/srv/state/blip2-bot.sqlite',
      redisUrl: 'redis://cache:6379',
    });
    expect(config.chat.conversationTtlMs).toBe(0);
    expect(config.discord).toEqual({
      token: 'abc.def.ghi',
      appId: '123456789012345678',
      apiUrl: 'http://127.0.0.1:9999/api',
      guildId: '223456789012345678',
    });
    expect(config.chat.allowList).toEqual({
      servers: ['1', '2', '3'],
      channels: ['9'],
      users: [],
      mode: 'tell',
    });
    expect(config.chat.rateLimitPerMinute).toBe(0);
    expect(config.queueCapacity).toBe(5);
    expect(config.chat.requestTimeoutMs).toBe(2500);
    expect(config.chat.maxImageBytes).toBe(8 * 1024 * 1024);
    expect(config.logLevel).toBe('debug');
    expect(config.secrets).toEqual(['abc.def.ghi', 'Bot abc.def.ghi', 'redis://cache:6379']);
  });

  it('scales out with QUEUE_URL: every store in that Redis, the worker and health settings read (issue 12)', () => {
    const plain = parseConfig({}, '/srv');
    expect(plain.queue).toBeUndefined();
    expect(plain.health).toEqual({ host: '127.0.0.1' });
    expect(plain.shutdownGraceMs).toBe(10_000);
    expect(plain.logFormat).toBe('text');
    const config = parseConfig(
      {
        QUEUE_URL: 'redis://:s3cret-password@queue.internal:6380/2',
        WORKER_CONCURRENCY: '2',
        FRONT_HEARTBEAT_SECONDS: '6',
        HEALTH_PORT: '8081',
        HEALTH_HOST: '0.0.0.0',
        SHUTDOWN_GRACE_SECONDS: '30',
        LOG_FORMAT: 'json',
      },
      '/srv',
    );
    expect(config.queue).toEqual({
      url: 'redis://:s3cret-password@queue.internal:6380/2',
      workerConcurrency: 2,
      frontHeartbeatTtlMs: 6_000,
    });
    expect(config.store).toMatchObject({
      kind: 'redis',
      redisUrl: 'redis://:s3cret-password@queue.internal:6380/2',
    });
    expect(config.health).toEqual({ host: '0.0.0.0', port: 8081 });
    expect(config.shutdownGraceMs).toBe(30_000);
    expect(config.logFormat).toBe('json');
    expect(config.secrets).toContain('redis://:s3cret-password@queue.internal:6380/2');
    expect(() => parseConfig({ QUEUE_URL: 'redis://q:6379', CACHE_STORE: 'sqlite' }, '/srv')).toThrow(
      /QUEUE_URL needs the stores in Redis too/,
    );
    expect(() => parseConfig({ QUEUE_URL: 'http://q', WORKER_CONCURRENCY: '0' }, '/srv')).toThrow(
      /QUEUE_URL must be a redis: or rediss: URL[\s\S]*WORKER_CONCURRENCY=0/,
    );
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      parseConfig({
        CACHE_STORE: 'redis',
        QUEUE_CAPACITY: '1.5',
        LOG_LEVEL: 'loud',
        DISCORD_GUILD_ID: 'my-server',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toMatch(/CACHE_STORE=redis needs REDIS_URL/);
    expect(problems.join('\n')).toMatch(/QUEUE_CAPACITY=1.5 must be a whole number/);
    expect(problems.join('\n')).toMatch(/LOG_LEVEL=loud must be one of: debug, info, warn, error/);
    expect(problems.join('\n')).toMatch(/DISCORD_GUILD_ID=my-server must be a numeric Discord id/);
  });

  it("lists Slack's problems with every other one, never echoing a token (item 21)", () => {
    let error: unknown;
    try {
      parseConfig({
        LOG_LEVEL: 'loud',
        SLACK_BOT_TOKEN: 'xoxp-secret-1',
        SLACK_APP_TOKEN: 'xoxb-secret-2',
        SLACK_PORT: 'eighty',
        SLACK_API_URL: 'ftp://x',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/LOG_LEVEL=loud/);
    expect(problems).toMatch(/SLACK_BOT_TOKEN holds a user token/);
    expect(problems).toMatch(/SLACK_APP_TOKEN should be an app-level token/);
    expect(problems).toMatch(/SLACK_PORT=eighty must be a whole number from 0 to 65535/);
    expect(problems).toMatch(/SLACK_API_URL must be an http\(s\) URL/);
    expect(problems).not.toMatch(/secret-\d/);
  });

  it('reads the Slack settings into the one config', () => {
    const config = parseConfig({
      SLACK_BOT_TOKEN: 'xoxb-1',
      SLACK_SIGNING_SECRET: 's',
      SLACK_PORT: '4000',
      SLACK_HOST: '127.0.0.1',
      SLACK_API_URL: 'http://127.0.0.1:9/api',
    });
    expect(config.slack).toEqual({
      botToken: 'xoxb-1',
      mode: 'http',
      signingSecret: 's',
      port: 4000,
      host: '127.0.0.1',
      apiUrl: 'http://127.0.0.1:9/api/',
      commandName: '/describe',
      shortcutCallbackId: 'describe_image',
      shutdownGraceMs: 10_000,
    });
    expect(parseConfig({}).slack).toBeUndefined();
  });

  it('reads .env, with the real environment winning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'blip2-env-'));
    try {
      writeFileSync(
        join(dir, '.env'),
        '# comment\nQUEUE_CAPACITY=7\nLOG_LEVEL=warn\nDISCORD_TOKEN="from file"\n',
      );
      const config = loadConfig({ env: { LOG_LEVEL: 'error' }, cwd: dir });
      expect(config.queueCapacity).toBe(7);
      expect(config.logLevel).toBe('error');
      expect(config.discord?.token).toBe('from file');
      expect(loadConfig({ env: {}, cwd: tmpdir(), envFile: 'no-such.env' }).queueCapacity).toBe(20);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('logger', () => {
  it('never prints configured secrets or token-shaped strings', () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      secrets: ['super-secret-value', 'short'],
      write: (l) => lines.push(l),
    });
    logger.debug('hidden');
    logger.info('token super-secret-value in a line');
    logger
      .child('discord')
      .warn('bad', new Error('auth with MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz012345'));
    logger.error('slack xoxb-1234567890-abcdefghij and xapp-1-A0B1C2D3E4-abc');
    expect(lines).toHaveLength(3);
    expect(lines.join('\n')).not.toMatch(/super-secret-value|MTIzNDU2|xoxb-1234|xapp-1-A0/);
    expect(lines[1]).toContain('[discord] bad');
    expect(redact('short stays', ['short'])).toBe('[redacted] stays');
  });
});

describe('web configuration', () => {
  it('defaults to the loopback interface on port 7860 with no key', () => {
    const { web } = parseConfig({}, '/srv');
    expect(web).toEqual({
      host: '127.0.0.1',
      port: 7860,
      portSet: false,
      corsOrigins: [],
      imageUrlHosts: [],
    });
  });

  it('reads every WEB_ variable', () => {
    const { web, secrets } = parseConfig(
      {
        WEB_HOST: '0.0.0.0',
        WEB_PORT: '8080',
        WEB_API_KEY: 'k'.repeat(24),
        WEB_CORS_ORIGINS: 'https://chat.example.com, http://localhost:3000',
        WEB_IMAGE_URL_HOSTS: 'Images.Example.com,cdn.example.org',
      },
      '/srv',
    );
    expect(web).toEqual({
      host: '0.0.0.0',
      port: 8080,
      portSet: true,
      apiKey: 'k'.repeat(24),
      corsOrigins: ['https://chat.example.com', 'http://localhost:3000'],
      imageUrlHosts: ['images.example.com', 'cdn.example.org'],
    });
    expect(secrets).toContain('k'.repeat(24));
  });

  it('refuses a non-loopback host without a key, and lists every web problem at once', () => {
    let error: ConfigError | undefined;
    try {
      parseConfig(
        {
          WEB_HOST: '0.0.0.0',
          WEB_PORT: '99999',
          WEB_CORS_ORIGINS: 'chat.example.com,https://ok.example.com/path',
          WEB_IMAGE_URL_HOSTS: 'http://images.example.com',
        },
        '/srv',
      );
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error?.problems).toHaveLength(5);
    expect(error?.message).toContain(
      'WEB_HOST=0.0.0.0 is reachable from other machines, so WEB_API_KEY must be set',
    );
    expect(error?.message).toContain('WEB_PORT=99999 must be a whole number from 0 to 65535');
    expect(error?.message).toContain('WEB_CORS_ORIGINS: chat.example.com must be an origin');
    expect(error?.message).toContain('WEB_CORS_ORIGINS: https://ok.example.com/path must be an origin');
    expect(error?.message).toContain('WEB_IMAGE_URL_HOSTS: http://images.example.com must be a host name');
    expect(() => parseConfig({ WEB_HOST: '::1' }, '/srv')).not.toThrow();
    expect(() => parseConfig({ WEB_API_KEY: 'short' }, '/srv')).toThrow(/at least 16 characters/);
  });
});

describe('.env.example', () => {
  const text = readFileSync(join(ROOT, '.env.example'), 'utf8');

  it('documents every variable, the Slack ones included', () => {
    const documented = new Set([...text.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
    const slack = [
      'SLACK_BOT_TOKEN',
      'SLACK_APP_TOKEN',
      'SLACK_SIGNING_SECRET',
      'SLACK_PORT',
      'SLACK_API_URL',
    ];
    for (const name of [...Object.keys(CONFIG_VARIABLES), ...slack]) expect(documented).toContain(name);
  });

  it('is a valid configuration as it stands', () => {
    const config = parseConfig(parseEnv(text), '/srv');
    expect(config.modelDir).toBe('/srv/models/blip2-flan-t5-xl');
    expect(config.discord).toBeUndefined();
  });
});
