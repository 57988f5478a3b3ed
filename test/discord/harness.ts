/** Starts the real chat core, engine and Discord adapter against the emulator, as `blip2-bot start` would. */
import type Keyv from 'keyv';
import { type RunningDiscordAdapter, startDiscordAdapter } from '../../adapters/discord/index.js';
import { ChatCore } from '../../src/chat/core.js';
import type { ChatSettings } from '../../src/chat/settings.js';
import type { DiscordConfig } from '../../src/config/config.js';
import { closeKeyv, createKeyv, type StoreOptions } from '../../src/storage/keyv-store.js';
import { createLogger, type Logger } from '../../src/util/logger.js';
import {
  type EngineFixture,
  FAST_GENERATION,
  openTestEngine,
  RecordingEngine,
} from '../chat/engine-fixture.js';
import type { DiscordEmulator } from '../emulators/discord/emulator.js';

export interface TestBot {
  core: ChatCore;
  engine: EngineFixture['engine'];
  adapter: RunningDiscordAdapter;
  logs: string[];
  stop(): Promise<void>;
}

export async function startTestBot(
  emulator: DiscordEmulator,
  options: {
    /** Where the bot keeps conversations, and the image cache when it loads its own engine. */
    store?: StoreOptions;
    settings?: Partial<ChatSettings>;
    /** An engine loaded once for several bots; it is left open on stop. Default: the bot loads its own. */
    sharedEngine?: EngineFixture;
    /** More Discord settings (e.g. `shards`). */
    discord?: Partial<DiscordConfig>;
  } = {},
): Promise<TestBot> {
  const store = options.store ?? { kind: 'memory' };
  const own = options.sharedEngine ? undefined : await openTestEngine({ store });
  const fixture = { engine: new RecordingEngine((options.sharedEngine ?? own!).engine.inner) };
  const conversations: Keyv = createKeyv(store, 'conversations');
  const logs: string[] = [];
  const logger: Logger = createLogger({
    level: 'debug',
    secrets: [emulator.token],
    write: (line) => logs.push(line),
  });
  const core = new ChatCore({
    engine: fixture.engine,
    conversations,
    settings: { rateLimitPerMinute: 0, generation: FAST_GENERATION, ...options.settings },
    logger,
  });
  const adapter = await startDiscordAdapter({
    core,
    config: { discord: { token: emulator.token, apiUrl: emulator.apiUrl, ...options.discord } },
    logger,
    readyTimeoutMs: 10_000,
  });
  return {
    core,
    engine: fixture.engine,
    adapter,
    logs,
    async stop() {
      await core.shutdown(2_000);
      await adapter.stop();
      await own?.close();
      await closeKeyv(conversations);
    },
  };
}
