/**
 * The Slack adapter: a Bolt app (Socket Mode or HTTP) whose listeners turn mentions, thread replies, direct
 * messages, `/describe` and the "Describe image" shortcut into `ChatMessage`s for the chat core. Every listener
 * returns at once (Bolt acknowledges within Slack's 3 seconds) and the answer is worked out in the background.
 */
import type { AddressInfo } from 'node:net';
import { App, LogLevel } from '@slack/bolt';
import type { ChatHandler, ChatMessage, RunningAdapter } from '../../src/chat/types.js';
import { waitWithGrace } from '../../src/util/grace.js';
import type { SlackConfig, SlackMode } from './config.js';
import {
  completeSlackFiles,
  fileLabel,
  imagesFirst,
  isImageFile,
  type SlackDownloadDeps,
  type SlackFile,
  slackFileToImage,
  slackHostPolicy,
} from './files.js';
import { describeStartError, fetchSlackIdentity } from './identity.js';
import { boltLoggerFor, redactingLogger, type SlackAdapterLogger } from './logger.js';
import {
  isDirectMessage,
  isThreadReply,
  mentionsUser,
  parseSlackMessage,
  placeOf,
  type SlackMessage,
  type SlackPlace,
} from './messages.js';
import { type SlackPostingClient, SlackThreadOutput, slackErrorCode } from './output.js';
import { BoundedMap, compareSlackTs, OnceFilter } from './recent.js';
import { SLACK_RETRY_POLICY } from './retry.js';
import { escapeForSlack, plainTextFromSlack } from './text.js';

export interface StartSlackAdapterOptions {
  core: ChatHandler;
  config: SlackConfig;
  logger?: SlackAdapterLogger;
}

export interface RunningSlackAdapter extends RunningAdapter {
  readonly mode: SlackMode;
  /** HTTP mode: the port actually listened on (useful with port 0). */
  readonly port?: number;
  readonly botUserId: string;
  readonly teamId?: string;
  /** Resolves once every answer started so far is finished. */
  idle(): Promise<void>;
}

/** The latest image seen in a channel, for `/describe`. */
interface RememberedImage {
  file: SlackFile;
  ts: string;
  place: SlackPlace;
}

/** Message subtypes that are still a person talking; edits, joins, bot posts and the like are not. */
const PERSON_SUBTYPES = new Set([undefined, 'file_share', 'thread_broadcast']);

export async function startSlackAdapter({
  core,
  config,
  logger = console,
}: StartSlackAdapterOptions): Promise<RunningSlackAdapter> {
  const secrets = [config.botToken, config.appToken, config.signingSecret].filter((s): s is string => !!s);
  const log = redactingLogger(logger, secrets);
  const boltLogger = boltLoggerFor(log, LogLevel.INFO);
  const apiUrl = config.apiUrl ?? 'https://slack.com/api/';
  const clientOptions = {
    ...(config.apiUrl ? { slackApiUrl: config.apiUrl } : {}),
    // Retry-After is honoured exactly; other failures back off, for at most about five minutes (retry.ts).
    retryConfig: SLACK_RETRY_POLICY,
  };

  const identity = await fetchSlackIdentity(config.botToken, {
    ...(config.apiUrl ? { apiUrl: config.apiUrl } : {}),
    logger: boltLogger,
  });
  const { botUserId } = identity;

  const app = new App({
    token: config.botToken,
    botId: identity.botId,
    botUserId,
    logger: boltLogger,
    clientOptions,
    // The app only keeps what it needs itself; Bolt's conversation store would be one more cache to bound.
    convoStore: false,
    ...(config.mode === 'socket'
      ? { socketMode: true, appToken: config.appToken }
      : { signingSecret: config.signingSecret, processBeforeResponse: false }),
  });

  const downloads: SlackDownloadDeps = {
    botToken: config.botToken,
    isTrustedHost: slackHostPolicy(config.apiUrl),
  };
  const once = new OnceFilter();
  const lastImages = new BoundedMap<string, RememberedImage>(5000);
  /** The file each conversation last got through /describe: a repeat goes without it (no second download). */
  const describedFiles = new BoundedMap<string, string>(5000);
  /** Threads the bot has been asked into since it started, where a picture without a mention is for it too. */
  const joinedThreads = new BoundedMap<string, true>(20_000);
  const jobs = new Set<Promise<void>>();
  let stopping = false;

  function rememberImage(message: SlackMessage): void {
    const file = message.files.find(isImageFile);
    if (!file) return;
    const previous = lastImages.get(message.channel);
    if (previous && compareSlackTs(previous.ts, message.ts) > 0) return;
    lastImages.set(message.channel, { file, ts: message.ts, place: placeOf(message) });
  }

  function notDelivered(error: unknown): string {
    const code = slackErrorCode(error);
    if (code === 'not_in_channel' || code === 'channel_not_found') {
      return `I'm not a member of this channel, so I can't post the answer. Invite me with \`/invite <@${botUserId}>\` and try again.`;
    }
    return `Sorry, I couldn't post the answer here${code ? ` (${code})` : ''}.`;
  }

  /** A person's message (mention, thread reply or DM) to the core, answered in its thread. */
  function dispatchMessage(
    client: Parameters<typeof dispatch>[0],
    message: NonNullable<ReturnType<typeof parseSlackMessage>>,
    teamId: string | undefined,
    addressed: boolean,
  ): void {
    const place = placeOf(message);
    dispatch(
      client,
      (files) =>
        chatMessage(
          {
            conversation: place.conversation,
            user: message.user ?? '',
            text: plainTextFromSlack(message.text, botUserId),
            addressed,
            messageId: `${message.channel}:${message.ts}`,
          },
          message.channel,
          message.team ?? teamId,
          files,
        ),
      imagesFirst(message.files),
      { place, reactTo: message.ts, addressed },
    );
  }

  /**
   * Runs one answer in the background. `tellPrivately` reaches the person when the thread can't be posted to
   * (slash commands and shortcuts carry a response_url that works even where the bot is not a member).
   */
  function dispatch(
    client: SlackPostingClient & Parameters<typeof completeSlackFiles>[0],
    build: (files: SlackFile[]) => ChatMessage,
    files: SlackFile[],
    target: { place: SlackPlace; reactTo?: string; addressed: boolean },
    tellPrivately?: (text: string) => Promise<unknown>,
  ): void {
    if (stopping) return;
    if (target.addressed) joinedThreads.set(target.place.conversation, true);
    const output = new SlackThreadOutput(
      client,
      {
        channel: target.place.channel,
        ...(target.place.threadTs ? { threadTs: target.place.threadTs } : {}),
        ...(target.reactTo ? { reactTo: target.reactTo } : {}),
      },
      log.warn,
    );
    const job = (async () => {
      let failure: unknown;
      try {
        const complete = await completeSlackFiles(client, files);
        await core.handle(build(complete), output);
        failure = output.deliveryError;
      } catch (error) {
        failure = error;
      } finally {
        await output.finish();
      }
      if (output.posted) joinedThreads.set(target.place.conversation, true);
      if (failure === undefined) return;
      log.error(
        `slack: answering in ${target.place.conversation} failed: ${failure instanceof Error ? failure.message : failure}`,
      );
      try {
        const text = notDelivered(failure);
        if (tellPrivately) await tellPrivately(text);
        else if (output.deliveryError === undefined) await output.send(text);
      } catch {
        // Slack itself is unreachable or refuses us; the log line above is all that can be done.
      }
    })();
    jobs.add(job);
    void job.finally(() => jobs.delete(job));
  }

  function chatMessage(
    source: Pick<ChatMessage, 'conversation' | 'user' | 'text' | 'addressed' | 'messageId'>,
    channel: string,
    team: string | undefined,
    files: SlackFile[],
  ): ChatMessage {
    return {
      platform: 'slack',
      ...source,
      channel,
      ...(team ? { server: team } : {}),
      images: files.map((file) => slackFileToImage(file, downloads)),
    };
  }

  app.event('app_mention', async ({ event, body, client }) => {
    const message = parseSlackMessage(event);
    if (!message?.user || message.botId) return;
    rememberImage(message);
    if (!once.claim(`event:${body.event_id}`, `message:${message.channel}:${message.ts}`)) {
      log.debug(`slack: skipping a repeated delivery of ${message.channel}/${message.ts}`);
      return;
    }
    dispatchMessage(client, message, body.team_id, true);
  });

  app.event('message', async ({ event, body, client }) => {
    const message = parseSlackMessage(event);
    if (!message?.user || message.botId || !PERSON_SUBTYPES.has(message.subtype)) return;
    rememberImage(message);
    const direct = isDirectMessage(message);
    // Top-level channel messages are not for the bot (a mention arrives as app_mention); only their images count.
    if (!direct && !isThreadReply(message)) return;
    // A mention inside a thread comes twice; app_mention answers it as addressed.
    if (!direct && mentionsUser(message.text, botUserId)) return;
    if (!once.claim(`event:${body.event_id}`, `message:${message.channel}:${message.ts}`)) {
      log.debug(`slack: skipping a repeated delivery of ${message.channel}/${message.ts}`);
      return;
    }
    const place = placeOf(message);
    // A picture in someone else's thread is not for the bot. Text is passed on: the core answers it only in a
    // conversation it already has, which also covers threads from before a restart.
    if (!direct && message.files.length > 0 && !joinedThreads.has(place.conversation)) return;
    // In a channel thread the core answers only conversations it already has; a DM always talks to us.
    dispatchMessage(client, message, body.team_id, direct);
  });

  app.command(config.commandName, async ({ command, ack, client, respond }) => {
    // The allow-list first: an ack promising an answer that never comes, or a public refusal in someone's
    // thread, is worse than a private "not enabled here" (or nothing, in ignore mode).
    const access = core.access?.({
      ...(command.team_id ? { server: command.team_id } : {}),
      channel: command.channel_id,
      user: command.user_id,
    });
    if (access && access.verdict !== 'allowed') {
      log.info(`slack: ${config.commandName} from ${command.user_id} refused by the allow-list`);
      await ack(access.verdict === 'tell' ? { response_type: 'ephemeral', text: access.refusal } : undefined);
      return;
    }
    const remembered = lastImages.get(command.channel_id);
    if (!remembered) {
      await ack({
        response_type: 'ephemeral',
        text:
          `I haven't seen an image in this channel yet. Post one (or mention <@${botUserId}> with it attached), then ` +
          `run \`${config.commandName}\` for a caption or \`${config.commandName} what is on the table?\` to ask ` +
          `about it. In a private channel, invite me first with \`/invite <@${botUserId}>\`.`,
      });
      return;
    }
    await ack({
      response_type: 'ephemeral',
      // File names are the poster's text: escaped, so "<!channel>.png" is not a mention.
      text: `Looking at "${escapeForSlack(fileLabel(remembered.file))}", the latest image here; the answer will be in its thread.`,
    });
    if (!once.claim(`command:${command.trigger_id}`)) return;
    const conversation = remembered.place.conversation;
    const fileId = remembered.file.id;
    const known =
      describedFiles.get(conversation) === fileId &&
      ((await core.hasPicture?.('slack', conversation)) ?? false);
    describedFiles.set(conversation, fileId);
    dispatch(
      client,
      (files) =>
        chatMessage(
          {
            conversation: remembered.place.conversation,
            user: command.user_id,
            text: plainTextFromSlack(command.text, botUserId),
            addressed: true,
            messageId: `command:${command.trigger_id}`,
          },
          command.channel_id,
          command.team_id,
          files,
        ),
      known ? [] : [remembered.file],
      { place: remembered.place, reactTo: remembered.ts, addressed: true },
      (text) => respond({ response_type: 'ephemeral', text }),
    );
  });

  app.shortcut(
    { callback_id: config.shortcutCallbackId, type: 'message_action' },
    async ({ shortcut, ack, client, respond }) => {
      await ack();
      const message = parseSlackMessage(shortcut.message, shortcut.channel.id);
      const images = message?.files.filter(isImageFile) ?? [];
      if (!message || images.length === 0) {
        await respond({
          response_type: 'ephemeral',
          text: '"Describe image" works on a message with an image attached, and that message has none.',
        }).catch((error: unknown) =>
          log.warn(`slack: could not answer a shortcut privately: ${String(error)}`),
        );
        return;
      }
      rememberImage(message);
      if (!once.claim(`shortcut:${shortcut.trigger_id}`)) return;
      const place = placeOf(message);
      dispatch(
        client,
        (files) =>
          chatMessage(
            {
              conversation: place.conversation,
              user: shortcut.user.id,
              text: '',
              addressed: true,
              messageId: `shortcut:${shortcut.trigger_id}`,
            },
            message.channel,
            shortcut.team?.id,
            files,
          ),
        images,
        { place, reactTo: message.ts, addressed: true },
        (text) => respond({ response_type: 'ephemeral', text }),
      );
    },
  );

  // Scaled out, a front that outlives another answers the dead one's Slack threads.
  core.resumeOutputs?.('slack', (target) => SlackThreadOutput.resume(app.client, target, log.warn));

  app.error(async (error) => {
    log.error(`slack: ${error.message}`);
  });

  let port: number | undefined;
  try {
    if (config.mode === 'http') {
      const server = await app.start({ port: config.port, ...(config.host ? { host: config.host } : {}) });
      port = (server.address() as AddressInfo).port;
    } else {
      await app.start();
    }
  } catch (error) {
    if (config.mode === 'socket') {
      throw slackErrorCode(error) ? describeStartError(error, 'SLACK_APP_TOKEN', apiUrl) : error;
    }
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new Error(`SLACK_PORT ${config.port} is already in use; set SLACK_PORT to a free port.`, {
        cause: error,
      });
    }
    throw error;
  }
  log.info(
    `slack: connected as @${identity.name ?? botUserId}${identity.team ? ` in ${identity.team}` : ''} ` +
      (config.mode === 'http' ? `(HTTP mode, listening on port ${port})` : '(Socket Mode)'),
  );

  const idle = async () => {
    while (jobs.size > 0) await Promise.allSettled([...jobs]);
  };

  return {
    name: 'slack',
    mode: config.mode,
    ...(port !== undefined ? { port } : {}),
    botUserId,
    ...(identity.teamId ? { teamId: identity.teamId } : {}),
    idle,
    async stop() {
      if (stopping) return;
      stopping = true;
      await app.stop().catch((error: unknown) => log.warn(`slack: stopping Bolt failed: ${String(error)}`));
      await waitWithGrace(jobs, config.shutdownGraceMs);
    },
  };
}
