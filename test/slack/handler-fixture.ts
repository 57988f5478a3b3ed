/**
 * The ChatHandler the Slack tests drive: the real chat core (src/chat/core.ts) on the real engine with the demo
 * model, exactly what `blip2-bot start` runs when no converted model is installed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Keyv from 'keyv';
import { ChatCore } from '../../src/chat/core.js';
import type { ChatSettings } from '../../src/chat/settings.js';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import type { ImageQuestionEngine } from '../../src/engine/api.js';
import { Blip2Engine } from '../../src/engine/engine.js';

/** The real engine on the seeded demo model, built into a temporary directory (a fraction of a second). */
async function openEngine(): Promise<{ engine: ImageQuestionEngine; dispose(): Promise<void> }> {
  const work = await mkdtemp(join(tmpdir(), 'blip2-slack-test-'));
  const engine = await Blip2Engine.load(await ensureDemoModel(join(work, 'demo')), {
    store: { kind: 'memory' },
  });
  return {
    engine,
    async dispose() {
      await engine.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}

export interface HandlerFixture {
  core: ChatCore;
  engine: ImageQuestionEngine;
  close(): Promise<void>;
}

export async function openChatHandler(settings: Partial<ChatSettings> = {}): Promise<HandlerFixture> {
  const { engine, dispose } = await openEngine();
  const conversations = new Keyv();
  const core = new ChatCore({
    engine,
    conversations,
    // Tests send bursts from one user; the per-user limit has its own tests in the core.
    settings: { rateLimitPerMinute: 0, ...settings },
  });
  return {
    core,
    engine,
    async close() {
      await core.shutdown(1000);
      await dispose();
      await conversations.disconnect().catch(() => {});
    },
  };
}
