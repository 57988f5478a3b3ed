/** What --help promises and the flags it documents (item 16), checked in process where no spawn is needed. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from '../../src/cli/args.js';
import { ASK_USAGE } from '../../src/cli/commands/ask.js';
import { CONVERT_USAGE } from '../../src/cli/commands/convert.js';
import { configPath } from '../../src/cli/commands/models.js';
import { PULL_USAGE } from '../../src/cli/commands/models-pull.js';
import { START_USAGE } from '../../src/cli/commands/start.js';
import { WORKER_USAGE } from '../../src/cli/commands/worker.js';
import { loadConfig } from '../../src/config/config.js';
import { DEFAULT_QUEUE_CAPACITY } from '../../src/engine/queue.js';
import { resolveBlip2Config } from '../../src/model/config.js';
import { HAS_SHARED, ROOT, SHARED_DIR, SHARED_SKIP_REASON } from '../helpers/shared.js';

describe('command-line help and flags', () => {
  it('takes a negative number as a flag value: --length-penalty -1 (the README default)', () => {
    const options = { 'length-penalty': { type: 'string' }, seed: { type: 'string' } } as const;
    expect(parse(['--length-penalty', '-1', '--seed', '3'], options, 'usage')).toEqual({
      'length-penalty': '-1',
      seed: '3',
    });
    expect(parse(['--length-penalty', '-0.5'], options, 'usage')['length-penalty']).toBe('-0.5');
    expect(() => parse(['--length-penalty', '-x'], options, 'usage')).toThrow(/ambiguous|Unknown option/);
  });

  it('start --help lists every Slack variable, SLACK_MODE and SLACK_HOST included', () => {
    for (const name of [
      'SLACK_BOT_TOKEN',
      'SLACK_APP_TOKEN',
      'SLACK_SIGNING_SECRET',
      'SLACK_MODE',
      'SLACK_PORT',
      'SLACK_HOST',
      'SLACK_API_URL',
    ]) {
      expect(START_USAGE).toMatch(new RegExp(`^  ${name}\\s+\\S`, 'm'));
    }
  });

  it('every variable .env.example documents is listed by start --help (or models pull --help for the Hub)', () => {
    const documented = [
      ...readFileSync(join(ROOT, '.env.example'), 'utf8').matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm),
    ].map((m) => m[1]!);
    expect(documented).toContain('SLACK_HOST');
    for (const name of new Set(documented)) {
      const listed = new RegExp(`^  ${name}\\s+\\S`, 'm');
      expect(listed.test(START_USAGE) || PULL_USAGE.includes(name), name).toBe(true);
    }
  });

  it('convert --help describes every --dtype, auto the default, mixed with an int4 language model', () => {
    expect(CONVERT_USAGE).toMatch(/--dtype[^\n]*\(default auto\)/);
    for (const dtype of ['auto', 'mixed', 'int8', 'int4', 'fp32']) {
      // Each name starts a description: at a line start or after another format's.
      expect(CONVERT_USAGE).toMatch(new RegExp(`(^\\s+|, |; )${dtype}(, \\S+)? {2,}\\S`, 'm'));
    }
    expect(CONVERT_USAGE).toMatch(/int4 MatMulNBits for\s+the language model \(T5 encoder/);
    expect(CONVERT_USAGE).not.toMatch(/int8[^,.]*T5 encoder/);
  });

  it('start --help and worker --help document the roles and the scale-out variables (issue 12)', () => {
    expect(START_USAGE).toMatch(/--role front/);
    for (const name of [
      'QUEUE_URL',
      'HEALTH_PORT',
      'SHUTDOWN_GRACE_SECONDS',
      'LOG_FORMAT',
      'WORKER_CONCURRENCY',
    ]) {
      expect(START_USAGE).toMatch(new RegExp(`^  ${name}\\s+\\S`, 'm'));
    }
    for (const name of [
      'QUEUE_URL',
      'BLIP2_MODEL_DIR',
      'WORKER_CONCURRENCY',
      'HEALTH_PORT',
      'SHUTDOWN_GRACE_SECONDS',
    ]) {
      expect(WORKER_USAGE).toMatch(new RegExp(`^  ${name}\\s+\\S`, 'm'));
    }
  });

  it('ask --help says which minimum length applies to raw --input-ids', () => {
    expect(ASK_USAGE).toMatch(/--input-ids[^\n]*\n?[^\n]*no minimum length/);
  });

  it('models --help, models demo --help and models synth --help print the usage', () => {
    for (const sub of [[], ['demo'], ['synth']]) {
      const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'blip2-bot.js'), 'models', ...sub, '--help'], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/models synth --config <config\.json \| blip2-flan-t5-xl>/);
    }
  });

  it('models synth --config blip2-flan-t5-xl is the real config, shipped with the package', () => {
    const path = configPath('blip2-flan-t5-xl');
    expect(existsSync(path)).toBe(true);
    const config = resolveBlip2Config(JSON.parse(readFileSync(path, 'utf8')));
    expect(config.languageModel === 't5' && config.text.dModel).toBe(2048);
    expect(config.numQueryTokens).toBe(32);
    expect(configPath('my/config.json')).toBe('my/config.json');
  });

  it.skipIf(!HAS_SHARED)('the blip2-flan-t5-xl preset is the Hub repo config.json, unchanged', () => {
    if (!HAS_SHARED) return console.warn(SHARED_SKIP_REASON);
    const hub = join(SHARED_DIR, 'assets', 'hf-configs', 'Salesforce--blip2-flan-t5-xl', 'config.json');
    expect(JSON.parse(readFileSync(configPath('blip2-flan-t5-xl'), 'utf8'))).toEqual(
      JSON.parse(readFileSync(hub, 'utf8')),
    );
  });

  it('start --help states the defaults the config uses (each defined once)', () => {
    const config = loadConfig({ env: {}, cwd: join(ROOT, 'test') });
    const stated = (name: string) =>
      Number(START_USAGE.match(new RegExp(`^  ${name}\\s.*\\(default (\\d+)`, 'm'))?.[1]);
    expect(stated('QUEUE_CAPACITY')).toBe(config.queueCapacity);
    expect(stated('RATE_LIMIT_PER_MINUTE')).toBe(config.chat.rateLimitPerMinute);
    expect(stated('REQUEST_TIMEOUT_SECONDS')).toBe(config.chat.requestTimeoutMs / 1000);
    expect(stated('MAX_IMAGE_MB')).toBe(config.chat.maxImageBytes / 1024 / 1024);
    expect(stated('CACHE_TTL_SECONDS') * 1000).toBe(config.store.ttlMs);
    expect(stated('SLACK_PORT')).toBe(3000);
  });

  it('the queue capacity default is defined once', () => {
    expect(loadConfig({ env: {}, cwd: join(ROOT, 'test') }).queueCapacity).toBe(DEFAULT_QUEUE_CAPACITY);
  });
});
