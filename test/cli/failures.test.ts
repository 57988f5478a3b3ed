/**
 * Every command's failure paths end in one clear line and a non-zero exit, never a stack trace or a crash.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDemoModel } from '../../src/model/demo.js';
import { ROOT } from '../helpers/shared.js';

const BIN = join(ROOT, 'bin', 'blip2-bot.js');
const STACK = /\n\s+at /;

function cli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** A one-line explanation: exit code as given, the pattern on stderr, no stack, no "unexpected error". */
function expectOneLine(r: ReturnType<typeof cli>, code: number, pattern: RegExp) {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(code);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(STACK);
  expect(r.stderr).not.toMatch(/unexpected error/);
}

describe('every command explains its failures in one line', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-failures-'));
  const demo = join(work, 'demo');
  const image = join(work, 'photo.png');
  const data = join(work, 'data');
  beforeAll(async () => {
    await ensureDemoModel(demo);
    await sharp({ create: { width: 24, height: 16, channels: 3, background: '#3a7' } })
      .png()
      .toFile(image);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function brokenModel(name: string, breakIt: (dir: string) => void): string {
    const dir = join(work, name);
    cpSync(demo, dir, { recursive: true });
    breakIt(dir);
    return dir;
  }

  it('ask, chat and inspect: a model dir without tokenizer.json', () => {
    const model = brokenModel('no-tokenizer', (dir) => rmSync(join(dir, 'tokenizer.json')));
    for (const command of ['ask', 'chat']) {
      const r = cli([command, '--model', model, '--image', image, '--data-dir', data], { input: 'hi\n' });
      expectOneLine(r, 1, new RegExp(`blip2-bot ${command}: .*tokenizer`, 'i'));
    }
  });

  it('ask and inspect: a bad preprocessor_config.json', () => {
    // The converter copies preprocessor_config.json into the manifest; the engine reads it from there.
    const model = brokenModel('bad-preprocessor', (dir) => {
      const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
      manifest.preprocessorConfig.do_resize = 'yes';
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    });
    expectOneLine(
      cli(['ask', '--model', model, '--image', image, '--data-dir', data]),
      1,
      /preprocessor_config\.json: "do_resize" must be true or false/,
    );
    expectOneLine(
      cli(['inspect', '--model', model, '--image', image, '--out', join(work, 'dump.safetensors')]),
      1,
      /preprocessor_config\.json/,
    );
  });

  it('ask, chat, inspect: a model dir that is not a model', () => {
    const empty = join(work, 'empty-model');
    mkdirSync(empty, { recursive: true });
    expectOneLine(cli(['ask', '--model', empty, '--image', image, '--data-dir', data]), 1, /manifest|model/i);
    expectOneLine(
      cli(['chat', '--model', empty, '--image', image, '--data-dir', data]),
      1,
      /manifest|model/i,
    );
    expectOneLine(
      cli(['inspect', '--model', empty, '--image', image, '--out', join(work, 'd.safetensors')]),
      1,
      /manifest|model/i,
    );
  });

  it('convert: no checkpoint; models: unknown subcommand, unreadable synth config', () => {
    const dir = join(work, 'not-a-checkpoint');
    mkdirSync(dir, { recursive: true });
    expectOneLine(cli(['convert', '--from', dir, '--out', join(work, 'out')]), 1, /no config\.json/);
    expectOneLine(cli(['models', 'bogus']), 2, /unknown models subcommand "bogus"/);
    const badJson = join(work, 'bad-config.json');
    writeFileSync(badJson, '{ not json');
    expectOneLine(
      cli(['models', 'synth', '--config', badJson, '--out', join(work, 'synth')]),
      1,
      /bad-config\.json.*JSON/,
    );
  });

  it('start: invalid configuration exits 2 with every problem listed', () => {
    const r = cli(['start'], {
      env: { CACHE_STORE: 'floppy', CACHE_TTL_SECONDS: 'soon', DISCORD_TOKEN: '' },
    });
    expectOneLine(r, 2, /CACHE_STORE/);
    expect(r.stderr).toMatch(/CACHE_TTL_SECONDS/);
  });
});
