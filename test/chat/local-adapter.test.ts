import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_USAGE_HINT } from '../../adapters/local/adapter.js';
import { startLocalAdapter } from '../../adapters/local/index.js';
import { ChatCore } from '../../src/chat/core.js';
import { DEMO_NOTICE } from '../../src/chat/messages.js';
import { silentLogger } from '../../src/util/logger.js';
import { type EngineFixture, FAST_GENERATION, openTestEngine, RecordingEngine } from './engine-fixture.js';
import { pngBytes } from './images.js';

let shared: EngineFixture;
let dir: string;

beforeAll(async () => {
  shared = await openTestEngine();
  dir = mkdtempSync(join(tmpdir(), 'blip2-local-'));
});

afterAll(async () => {
  await shared.close();
  rmSync(dir, { recursive: true, force: true });
});

function until(out: () => string, pattern: RegExp | string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      const text = out();
      if (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text)) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${pattern} in:\n${text}`));
      else setTimeout(check, 10);
    };
    check();
  });
}

describe('local terminal adapter', () => {
  it('captions a picture set with /image, answers questions about it, and quits', async () => {
    const picture = join(dir, 'my picture.png');
    writeFileSync(picture, await pngBytes(1));
    const engine = new RecordingEngine(shared.engine.inner);
    const core = new ChatCore({
      engine,
      conversations: new Keyv(),
      settings: { rateLimitPerMinute: 0, generation: FAST_GENERATION },
    });
    const input = new PassThrough();
    const output = new PassThrough();
    let printed = '';
    output.on('data', (chunk) => {
      printed += chunk.toString();
    });
    const adapter = await startLocalAdapter({ core, logger: silentLogger, input, output });

    input.write('what is it?\n');
    await until(() => printed, LOCAL_USAGE_HINT);
    input.write(`/image "${picture}"\n`);
    await until(() => printed, DEMO_NOTICE);
    input.write('what colour is it?\n');
    await until(() => String(printed.split(DEMO_NOTICE).length === 3), 'true');
    input.write('/image /no/such/file.png\n');
    await until(() => printed, 'cannot read the picture /no/such/file.png: no such file or directory');
    input.write('/quit\n');
    await adapter.done;

    expect(engine.requests.map((r) => r.question ?? `<${r.task}>`)).toEqual([
      '<caption>',
      'what colour is it?',
    ]);
    expect(engine.results[1]!.imageCached).toBe(true);
    // Piped input echoes no newline after the prompt, so an answer may follow it on the same line.
    expect(printed).toMatch(/^(you> )?bot> /m);
  });
});
