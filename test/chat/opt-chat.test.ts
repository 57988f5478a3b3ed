import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalAdapter } from '../../adapters/local/index.js';
import { ChatCore } from '../../src/chat/core.js';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { Blip2Engine } from '../../src/engine/engine.js';
import { silentLogger } from '../../src/util/logger.js';
import { HAS_OPT_FIXTURE, OPT_FIXTURE_DIR } from '../helpers/shared.js';
import { FAST_GENERATION, RecordingEngine } from './engine-fixture.js';

describe.skipIf(!HAS_OPT_FIXTURE)('the chat core on an OPT model (blip2-opt-tiny)', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-opt-chat-'));
  let engine: Blip2Engine;

  beforeAll(async () => {
    await convertCheckpoint(OPT_FIXTURE_DIR, join(work, 'model'));
    engine = await Blip2Engine.load(join(work, 'model'), { store: { kind: 'memory' } });
  });
  afterAll(async () => {
    await engine?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('captions with the OPT prompt style and answers a follow-up from the cache', async () => {
    const recording = new RecordingEngine(engine);
    const core = new ChatCore({
      engine: recording,
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
    const picture = join(OPT_FIXTURE_DIR, 'a0_scene_320x200.jpg');
    input.write(`/image "${picture}"\n`);
    const waitFor = async (n: number) => {
      for (let i = 0; i < 1000 && recording.results.length < n; i++)
        await new Promise((r) => setTimeout(r, 20));
    };
    await waitFor(1);
    input.write('what is in the picture?\n');
    await waitFor(2);
    input.write('/quit\n');
    await adapter.done;

    expect(recording.results).toHaveLength(2);
    const [caption, answer] = recording.results;
    // The chat core asks for a caption with no prompt; the engine uses LAVIS's OPT prompt "a photo of".
    const bytes = new Uint8Array(readFileSync(picture));
    const prompted = await engine.generate({
      image: bytes,
      prompt: 'a photo of',
      options: FAST_GENERATION.caption,
    });
    const bare = await engine.generate({ image: bytes, prompt: '', options: FAST_GENERATION.caption });
    expect(caption!.ids).toEqual(prompted.ids);
    expect(caption!.ids).not.toEqual(bare.ids);
    expect(answer!.imageCached).toBe(true);
    expect(answer!.ids.length).toBeGreaterThan(0);
    // The terminal chat prompts with "you> "; each answer follows it as "bot> …".
    expect(printed).toMatch(/(^|you> )bot> \S/m);
  });
});
