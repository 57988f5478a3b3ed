/**
 * `blip2-bot start` (= `npm start`): reads the configuration, loads the model (or the demo model, loudly), starts
 * every chat adapter whose credentials are set, and shuts them down cleanly on SIGINT/SIGTERM. With no
 * credentials at all it says what to set and runs the web playground instead (terminal or not).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type Keyv from 'keyv';
import { startDiscordAdapter } from '../../../adapters/discord/index.js';
import { startLocalAdapter } from '../../../adapters/local/index.js';
import { startWebAdapter } from '../../../adapters/web/index.js';
import { ChatCore } from '../../chat/core.js';
import type { ChatHandler, RunningAdapter } from '../../chat/types.js';
import { type BotConfig, CONFIG_VARIABLES, type Env, loadConfig } from '../../config/config.js';
import { ensureDemoModel } from '../../demo/demo-model.js';
import type { ImageQuestionEngine } from '../../engine/api.js';
import { ThreadedEngine } from '../../engine/threaded-engine.js';
import { UserFacingError } from '../../errors.js';
import { MANIFEST_FILE } from '../../model/graph-io.js';
import { type HealthServer, startHealthEndpoints } from '../../scale/health.js';
import { QueueEngine } from '../../scale/queue-engine.js';
import { connectRedis, QueueUnavailableError } from '../../scale/redis.js';
import { redisChatState } from '../../scale/shared-state.js';
import {
  checkKeyv,
  closeKeyv,
  createKeyv,
  describeStore,
  StoreUnavailableError,
} from '../../storage/keyv-store.js';
import { createLogger, type Logger } from '../../util/logger.js';
import { stopRequested } from '../stop-requested.js';

export const START_USAGE = `Usage: blip2-bot start [--local] [--role all|front]

Runs the bot on every platform whose credentials are set (Discord: DISCORD_TOKEN; Slack: SLACK_BOT_TOKEN plus
SLACK_APP_TOKEN or SLACK_SIGNING_SECRET). Settings come from the environment and from .env in the current
directory (see .env.example). With no credentials it runs the web playground and API on WEB_HOST:WEB_PORT
(http://127.0.0.1:7860/ by default); with credentials, the web runs too when WEB_PORT is set.

  --local         also run a chat in this terminal (\`blip2-bot chat\` is the terminal chat on its own)
  --role all      (default) one process: the adapters and the model, an in-process queue
  --role front    scaled out: the adapters only, no model; answers come from \`blip2-bot worker\` processes
                  through the BullMQ queue in QUEUE_URL (see docs/deployment.md)

Variables:
${Object.entries(CONFIG_VARIABLES)
  .map(([name, meaning]) => `  ${name.padEnd(24)}${meaning}`)
  .join('\n')}
(Discord and Slack set-up: "Run it on Discord" and "Run it on Slack" in README.md.)`;

const NO_PLATFORM_HELP = `No chat platform is configured, so the bot runs the web playground only. To connect it, set in .env
(copy .env.example):
  Discord: DISCORD_TOKEN                      (README.md "Run it on Discord": app, intents, invite, /describe)
  Slack:   SLACK_BOT_TOKEN + SLACK_APP_TOKEN  (Socket Mode; or SLACK_SIGNING_SECRET for HTTP mode; README.md "Run it on Slack")`;

interface SlackModule {
  slackConfigFromEnv(env: Env): unknown;
  startSlackAdapter(options: { core: ChatHandler; config: never; logger: Logger }): Promise<RunningAdapter>;
}

/** What tests (and embedders) may replace; a normal run uses the process's own. */
export interface StartDeps {
  env?: Env;
  cwd?: string;
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Stops the bot when aborted, in addition to SIGINT/SIGTERM. */
  signal?: AbortSignal;
  /** Called once every adapter is up. */
  onReady?: (running: { core: ChatCore; adapters: RunningAdapter[]; demo: boolean }) => void;
}

async function loadSlackModule(): Promise<SlackModule | undefined> {
  try {
    const mod = (await import('../../../adapters/slack/index.js')) as Partial<SlackModule>;
    if (typeof mod.slackConfigFromEnv === 'function' && typeof mod.startSlackAdapter === 'function') {
      return mod as SlackModule;
    }
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'ERR_MODULE_NOT_FOUND') throw err;
  }
  return undefined;
}

function demoBanner(modelDir: string): string {
  const lines = [
    `No converted model found in ${modelDir}.`,
    'Running the DEMO model: tiny random weights. Its answers are RANDOM and MEAN NOTHING;',
    'every reply says so. Convert a real BLIP-2 model (see models/README.md) and set BLIP2_MODEL_DIR.',
  ];
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const bar = '!'.repeat(width);
  return [bar, ...lines.map((l) => `! ${l.padEnd(width - 4)} !`), bar].join('\n');
}

async function loadEngine(
  config: BotConfig,
  logger: Logger,
  stderr: NodeJS.WritableStream,
): Promise<ThreadedEngine> {
  let modelDir = config.modelDir;
  if (!existsSync(join(modelDir, MANIFEST_FILE))) {
    stderr.write(`${demoBanner(modelDir)}\n`);
    modelDir = await ensureDemoModel();
  }
  logger.info(`loading the model from ${modelDir}`);
  const started = performance.now();
  // The model runs in a worker thread, so no vision run ever stalls the adapters' acks and heartbeats.
  const engine = await ThreadedEngine.load(modelDir, {
    store: config.store,
    ...(config.store.ttlMs ? { cacheTtlMs: config.store.ttlMs } : {}),
    queueCapacity: config.queueCapacity,
    requestTimeoutMs: config.chat.requestTimeoutMs,
    preprocess: { maxBytes: config.chat.maxImageBytes },
    logger: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) },
  });
  logger.info(
    `model ${engine.modelId} ready in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
      `cache: ${describeStore(config.store)}`,
  );
  return engine;
}

/** An adapter that lost its platform for good after start-up (Discord's fatal gateway closes). */
function adapterFailure(): {
  promise: Promise<string>;
  report: (error: UserFacingError) => void;
  error: UserFacingError | undefined;
} {
  let resolve: (reason: string) => void = () => {};
  const state = {
    promise: new Promise<string>((r) => {
      resolve = r;
    }),
    error: undefined as UserFacingError | undefined,
    report: (error: UserFacingError) => {
      state.error ??= error;
      resolve(error.code);
    },
  };
  return state;
}

export async function startCommand(argv: string[], deps: StartDeps = {}): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const stdin = deps.stdin ?? process.stdin;
  let local = false;
  let role: 'all' | 'front' = 'all';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      stdout.write(`${START_USAGE}\n`);
      return 0;
    }
    const roleValue = arg === '--role' ? argv[++i] : arg.startsWith('--role=') ? arg.slice(7) : undefined;
    if (arg === '--local') local = true;
    else if (roleValue === 'all' || roleValue === 'front') role = roleValue;
    else if (arg === '--role' || arg.startsWith('--role=')) {
      stderr.write(
        `blip2-bot start: --role must be all or front (got ${roleValue ?? 'nothing'})\n\n${START_USAGE}\n`,
      );
      return 2;
    } else {
      stderr.write(`blip2-bot start: unknown option ${arg}\n\n${START_USAGE}\n`);
      return 2;
    }
  }

  let config: BotConfig;
  let slack: { module: SlackModule; config: unknown } | undefined;
  try {
    config = loadConfig({ ...(deps.env ? { env: deps.env } : {}), ...(deps.cwd ? { cwd: deps.cwd } : {}) });
    // The one config schema read Slack's variables with the others (every problem listed at once).
    const slackModule = config.slack ? await loadSlackModule() : undefined;
    if (slackModule && config.slack) slack = { module: slackModule, config: config.slack };
  } catch (err) {
    if (err instanceof UserFacingError) {
      stderr.write(`blip2-bot start: ${err.userMessage}\n`);
      return 2;
    }
    throw err;
  }
  if (role === 'front' && !config.queue) {
    stderr.write(
      'blip2-bot start: --role front needs QUEUE_URL (redis://host:port), where `blip2-bot worker` processes take the jobs; without it, run plain `blip2-bot start`.\n',
    );
    return 2;
  }

  const platforms = Boolean(config.discord || slack);
  if (!platforms) stderr.write(`${NO_PLATFORM_HELP}\n`);
  // Without a platform the web is the bot's face; beside platforms it runs only when asked for.
  const web = !platforms || config.web.portSet;

  // With the terminal chat on the same screen, info lines would interleave with the conversation: warnings only,
  // unless LOG_LEVEL asks for more.
  const level = local && !config.env.LOG_LEVEL ? 'warn' : config.logLevel;
  const logger = createLogger({ level, secrets: config.secrets, format: config.logFormat });
  const stop = stopRequested(deps.signal);
  let stopping = false;
  // Waiting for a worker to appear must end on Ctrl-C / SIGTERM too.
  const stopWaiting = new AbortController();
  void stop.promise.then(() => stopWaiting.abort());
  const failed = adapterFailure();
  const stores: Keyv[] = [];
  const adapters: RunningAdapter[] = [];
  let engine: ImageQuestionEngine | undefined;
  let core: ChatCore | undefined;
  let health: HealthServer | undefined;
  let redis: Redis | undefined;
  let ready = false;
  let exitCode = 0;
  try {
    health = await startHealthEndpoints(config.health, logger, () => ({
      ready: ready && !stopping,
      details: {
        role: role === 'front' ? 'front' : 'all',
        ...(engine ? { model: engine.modelId, waiting: engine.queueLength } : {}),
        active: core?.activeJobs ?? 0,
        ...(stopping ? { draining: true } : {}),
      },
    }));
    // The store first: a bad BLIP2_DATA_DIR or an unreachable Redis is one clear line now, not warnings and
    // "expired" answers later.
    const storeErrors = (e: unknown) =>
      logger.warn(`conversation store error: ${(e as Error)?.message ?? e}`);
    const conversations = createKeyv(config.store, 'conversations', { onError: storeErrors });
    stores.push(conversations);
    await checkKeyv(conversations, config.store);
    const handled = createKeyv(config.store, 'handled', { onError: storeErrors });
    stores.push(handled);
    const webThreads = web ? createKeyv(config.store, 'web-threads', { onError: storeErrors }) : undefined;
    if (webThreads) stores.push(webThreads);
    if (role === 'front' && config.queue) {
      redis = await connectRedis(config.queue.url);
      const images = createKeyv(config.store, 'images', { onError: storeErrors });
      stores.push(images);
      engine = await QueueEngine.connect({
        queueUrl: config.queue.url,
        redis,
        images,
        logger: logger.child('queue'),
        signal: stopWaiting.signal,
        heartbeatTtlMs: config.queue.frontHeartbeatTtlMs,
      });
    } else engine = await loadEngine(config, logger, stderr);
    core = new ChatCore({
      engine,
      conversations,
      handled,
      // Any front may take any event: handled ids and rate limits are shared through Redis.
      ...(redis ? { shared: redisChatState(redis) } : {}),
      settings: config.chat,
      logger: logger.child('chat'),
    });

    if (config.discord) {
      adapters.push(
        await startDiscordAdapter({
          core,
          config,
          logger: logger.child('discord'),
          onFatal: failed.report,
          stopGraceMs: config.shutdownGraceMs,
        }),
      );
    }
    if (slack) {
      adapters.push(
        await slack.module.startSlackAdapter({
          core,
          config: slack.config as never,
          logger: logger.child('slack'),
        }),
      );
    }
    if (webThreads) {
      const running = await startWebAdapter({
        core,
        engine,
        config: config.web,
        threads: webThreads,
        logger: logger.child('web'),
      });
      adapters.push(running);
      stdout.write(`Web playground and API: ${running.url} (OpenAI-compatible: ${running.url}v1)\n`);
    }
    let localDone: Promise<unknown> = new Promise(() => {});
    if (local) {
      if (engine.demo) stdout.write('(demo model: answers are random)\n');
      const terminal = await startLocalAdapter({ core, logger, input: stdin, output: stdout });
      adapters.push(terminal);
      localDone = terminal.done;
    }
    ready = true;
    deps.onReady?.({ core, adapters, demo: engine.demo });
    logger.info(`running: ${adapters.map((a) => a.name).join(', ')}; press Ctrl-C to stop`);
    const reason = await Promise.race([
      stop.promise,
      localDone.then(() => 'terminal chat ended'),
      failed.promise,
    ]);
    stopping = true;
    logger.info(
      `stopping (${reason}): finishing running answers for up to ${config.shutdownGraceMs / 1000} s`,
    );
    if (failed.error) {
      // The orderly stop below still runs; the non-zero exit lets a service manager restart the bot.
      stderr.write(`blip2-bot start: ${failed.error.userMessage}\n`);
      exitCode = 1;
    }
  } catch (err) {
    if (err instanceof UserFacingError) {
      // Meant for people: the one line below says it all; the details (cause, stack) only at debug level.
      logger.debug('the bot could not start', err);
      stderr.write(`blip2-bot start: ${err.userMessage}\n`);
      exitCode = err instanceof StoreUnavailableError || err instanceof QueueUnavailableError ? 2 : 1;
    } else {
      logger.error('the bot could not start', err);
      stderr.write(`blip2-bot start: ${(err as Error).message}\n`);
      exitCode = 1;
    }
  } finally {
    stop.cleanup();
    // Running answers finish (or are cancelled after the grace period) while the adapters can still post them.
    stopping = true;
    await core?.shutdown(config.shutdownGraceMs);
    for (const adapter of adapters.reverse()) {
      await adapter.stop().catch((err) => logger.warn(`stopping ${adapter.name} failed`, err));
    }
    await engine?.close().catch((err) => logger.warn('closing the engine failed', err));
    for (const store of stores) await closeKeyv(store);
    redis?.disconnect();
    await health?.close();
  }
  return exitCode;
}
