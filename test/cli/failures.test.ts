/**
 * Every command's failure paths end in one clear line and a non-zero exit, never a stack trace or a crash.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
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

  it('a command line long enough to crash onnxruntime is refused before it loads (item 1)', () => {
    const long = 'x'.repeat(40_000);
    const r = cli(['ask', '--model', demo, '--image', image, '--question', long, '--data-dir', data]);
    expectOneLine(r, 1, /Your question is too long/);
    expect(r.stderr).toMatch(/--question-file -/);
    // Many short arguments crash it too, and every command is covered, not only ask.
    const many = Array.from({ length: 400 }, () => 'y'.repeat(100));
    expectOneLine(cli(['convert', '--from', ...many]), 1, /command line is too long/);
    expectOneLine(cli(['start', `--x=${long}`]), 1, /command line is too long/);
  });

  it('ask --question-file - reads a long question from standard input and answers "too long" (item 1)', () => {
    const question = `what is ${'very '.repeat(600)}big?`;
    const r = cli(['ask', '--model', demo, '--image', image, '--question-file', '-', '--data-dir', data], {
      input: question,
    });
    expectOneLine(r, 1, /Your question is too long: it takes \d+ tokens/);
    const file = join(work, 'question.txt');
    writeFileSync(file, 'what colour is it?\n');
    const ok = cli([
      'ask',
      '--model',
      demo,
      '--image',
      image,
      '--question-file',
      file,
      '--json',
      '--data-dir',
      data,
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).ids.length).toBeGreaterThan(0);
  });

  it('ask --image /dev/zero is refused at once instead of read forever (item 2; the rest in read-capped-file)', () => {
    const dev = cli(['ask', '--model', demo, '--image', '/dev/zero', '--data-dir', data]);
    expectOneLine(dev, 1, /\/dev\/zero is not a regular file/);
    expectOneLine(cli(['chat', '--model', demo, '--image', work, '--data-dir', data]), 1, /is a directory/);
  });

  it('ask --input-ids outside the vocabulary says which id is wrong (item 3)', () => {
    const r = cli([
      'ask',
      '--model',
      demo,
      '--image',
      image,
      '--input-ids',
      '99999999,1',
      '--data-dir',
      data,
    ]);
    expectOneLine(r, 1, /Token id 99999999 is not in the model's vocabulary: ids go from 0 to \d+/);
    expect(r.stderr).not.toMatch(/Gather|onnxruntime/i);
  });

  it('start: an unusable data dir or an unreachable Redis is one line and exit 2, never a hang (items 5, 6)', () => {
    const file = join(work, 'a-file');
    writeFileSync(file, 'not a directory');
    const env = { BLIP2_MODEL_DIR: demo, DISCORD_TOKEN: '', SLACK_BOT_TOKEN: '' };
    const start = (extra: NodeJS.ProcessEnv) => cli(['start', '--local'], { env: { ...env, ...extra } });
    expectOneLine(start({ BLIP2_DATA_DIR: join(file, 'data') }), 2, /a-file is a file, not a directory/);
    // Node's recursive mkdir loops forever here; the spawn's timeout would report a signal.
    expectOneLine(
      start({ BLIP2_DATA_DIR: '/proc/nope' }),
      2,
      /Cannot create the data directory \/proc\/nope/,
    );
    expectOneLine(
      start({ REDIS_URL: 'redis://127.0.0.1:1' }),
      2,
      /blip2-bot start: The Redis store at redis:\/\/127\.0\.0\.1:1\/? cannot be used/,
    );
  });

  it('start: Discord unreachable is one line without a stack trace (item 5)', () => {
    const r = cli(['start'], {
      env: {
        BLIP2_MODEL_DIR: demo,
        BLIP2_DATA_DIR: data,
        DISCORD_TOKEN: 'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz012345',
        DISCORD_API_URL: 'http://127.0.0.1:1/api',
      },
    });
    expectOneLine(r, 1, /blip2-bot start: Could not connect to Discord/);
  });

  it('start: invalid configuration exits 2 with every problem listed', () => {
    const r = cli(['start'], {
      env: { CACHE_STORE: 'floppy', CACHE_TTL_SECONDS: 'soon', DISCORD_TOKEN: '' },
    });
    expectOneLine(r, 2, /CACHE_STORE/);
    expect(r.stderr).toMatch(/CACHE_TTL_SECONDS/);
  });
});
