/**
 * The Discord adapter: turns mentions, thread follow-ups, DMs and `/describe` into ChatMessages for the chat
 * core, and the core's answers into thread posts, replies and interaction responses.
 */

import { once } from 'node:events';
import {
  ChannelType,
  type ChatInputCommandInteraction,
  type Client,
  type Interaction,
  type Message,
  PermissionFlagsBits,
} from 'discord.js';
import type { ChatHandler, ChatMessage, IncomingImage, RunningAdapter } from '../../src/chat/types.js';
import type { BotConfig, DiscordConfig } from '../../src/config/config.js';
import { UserFacingError } from '../../src/errors.js';
import { waitWithGrace } from '../../src/util/grace.js';
import type { Logger } from '../../src/util/logger.js';
import { toIncomingImage } from './attachments.js';
import { createDiscordClient } from './client.js';
import { DESCRIBE_COMMAND, IMAGE_OPTION, QUESTION_OPTION } from './commands.js';
import { InteractionOutput, MessageOutput, resumeDiscordOutput, threadName } from './outputs.js';

export interface DiscordChatCore extends ChatHandler {
  /** When present, `/describe` answers get a thread for follow-ups once the conversation has a picture. */
  hasPicture?(platform: 'discord', conversation: string): Promise<boolean>;
}

export interface DiscordAdapterOptions {
  core: DiscordChatCore;
  config: Pick<BotConfig, 'discord'> | { discord: DiscordConfig };
  logger: Logger;
  /** How long `stop()` lets running handlers finish before closing the connection. */
  stopGraceMs?: number;
  /** Limit for the gateway handshake (READY and the guilds). */
  readyTimeoutMs?: number;
  /**
   * Called once when Discord closes the connection for good after start-up (a reset token: 4004; the Message
   * Content intent switched off: 4014; …); discord.js does not reconnect then. The caller stops the bot.
   */
  onFatal?: (error: UserFacingError) => void;
}

export interface RunningDiscordAdapter extends RunningAdapter {
  readonly client: Client;
  /** False when the application lacks the Message Content intent (follow-ups then need a mention). */
  readonly messageContent: boolean;
}

export const NO_CONTENT_NOTICE =
  "I can only read messages that mention me here (the bot's Message Content intent is off). Mention me with your follow-up question.";

const ENABLE_CONTENT_HELP =
  'Discord refused the Message Content intent. Follow-ups in threads will need a mention. To allow them without ' +
  'one, open https://discord.com/developers/applications → your app → Bot → Privileged Gateway Intents, turn on ' +
  'MESSAGE CONTENT INTENT, save, and restart the bot.';

export async function startDiscordAdapter(options: DiscordAdapterOptions): Promise<RunningDiscordAdapter> {
  const config = options.config.discord;
  if (!config) throw new Error('startDiscordAdapter needs config.discord (set DISCORD_TOKEN)');
  const logger = options.logger;

  let messageContent = true;
  let client: Client;
  try {
    client = await connect(config, true, logger, options.readyTimeoutMs);
  } catch (err) {
    if (!/disallowed intents/i.test(String((err as Error)?.message))) throw explainLoginError(err);
    logger.warn(ENABLE_CONTENT_HELP);
    messageContent = false;
    client = await connect(config, false, logger, options.readyTimeoutMs).catch((e) => {
      throw explainLoginError(e);
    });
  }
  const me = client.user!.id;
  // Scaled out, a front that outlives another answers the dead one's Discord messages and commands.
  options.core.resumeOutputs?.('discord', (target) => resumeDiscordOutput(client, target, logger));
  const shards = client.ws.shards.size;
  logger.info(
    `connected to Discord as ${client.user!.tag} (${client.guilds.cache.size} server(s)${shards > 1 ? `, ${shards} shards` : ''})`,
  );
  let fatal = false;
  client.on('shardDisconnect', (event: { code: number }) => {
    if (fatal) return;
    fatal = true;
    const explanation = explainFatalClose(event.code);
    logger.error(explanation);
    options.onFatal?.(new UserFacingError('discord_disconnected', explanation));
  });

  const inflight = new Set<Promise<void>>();
  let accepting = true;
  const told = new Set<string>();
  const track = (work: Promise<void>) => {
    const job = work.catch((err) => logger.error('Discord event failed', err));
    inflight.add(job);
    void job.finally(() => inflight.delete(job));
  };

  client.on('messageCreate', (message) => {
    if (accepting) track(onMessage(message));
  });
  client.on('interactionCreate', (interaction) => {
    if (accepting) track(onInteraction(interaction));
  });

  async function onMessage(message: Message): Promise<void> {
    if (message.author.bot || message.system) return;
    const channel = message.channel;
    const mentioned = message.mentions.users.has(me);
    const inDm = channel.type === ChannelType.DM;
    const inThread = channel.isThread();
    const inBotThread = inThread && channel.ownerId === me;
    if (!mentioned && !inDm && !inBotThread) return;

    if (inBotThread && !mentioned && !messageContent) {
      // Without the intent the text of this follow-up is invisible to us: say so, once per thread.
      if (!told.has(channel.id)) {
        told.add(channel.id);
        await channel.send({ content: NO_CONTENT_NOTICE });
      }
      return;
    }

    let images: IncomingImage[] = [...message.attachments.values()].map(toIncomingImage);
    if (images.length === 0 && message.reference?.messageId) {
      // A mention replying to someone's picture is about that picture.
      const referenced = await message.fetchReference().catch(() => undefined);
      if (referenced) images = [...referenced.attachments.values()].map(toIncomingImage);
    }
    const text = stripMentions(message.content, me);

    let conversation: string;
    let output: MessageOutput;
    const name = threadName(text, images[0]?.name);
    if (inThread || inDm) {
      // The whole thread (or DM) is one conversation. In a DM the answer replies to the message it is about.
      conversation = channel.id;
      output = new MessageOutput(message, inDm ? 'reply' : 'channel', name, logger);
    } else if (canOpenThread(message)) {
      // A thread started from a message has the message's id, so follow-ups there land in this conversation.
      // Without a picture there is nothing to talk about yet: the hint goes in a reply, not a new thread.
      conversation = message.id;
      output = new MessageOutput(message, images.length > 0 ? 'thread' : 'reply', name, logger);
    } else {
      // No threads here: each person's conversation is the channel, continued by mentioning the bot.
      conversation = `${channel.id}:${message.author.id}`;
      output = new MessageOutput(message, 'reply', name, logger);
    }

    const chat: ChatMessage = {
      platform: 'discord',
      conversation,
      user: message.author.id,
      ...(message.guildId ? { server: message.guildId } : {}),
      channel: inThread ? (channel.parentId ?? channel.id) : channel.id,
      text,
      images,
      addressed: mentioned || inDm,
      messageId: message.id,
    };
    await options.core.handle(chat, output);
  }

  async function onInteraction(interaction: Interaction): Promise<void> {
    if (!interaction.isChatInputCommand() || interaction.commandName !== DESCRIBE_COMMAND) return;
    // Discord drops the interaction unless it is acknowledged within 3 seconds: defer before anything else.
    try {
      await interaction.deferReply();
    } catch (err) {
      logger.warn('could not acknowledge /describe in time', err);
      return;
    }
    const attachment = interaction.options.getAttachment(IMAGE_OPTION, false);
    const question = interaction.options.getString(QUESTION_OPTION, false) ?? '';
    const channel = interaction.channel;
    const inThread = channel?.isThread() ?? false;
    const inDm = !interaction.inGuild();
    const threadable = !inThread && !inDm && channelAllowsThreads(interaction);

    // Where no thread can be opened the channel is shared: each person's conversation there is their own, as
    // with mentions (one key per channel mixed different people's pictures and questions).
    let conversation =
      inThread || inDm ? interaction.channelId : `${interaction.channelId}:${interaction.user.id}`;
    let replyId: string | undefined;
    if (threadable) {
      // The reply becomes the thread's starter message, so its id is the conversation's id.
      replyId = (await interaction.fetchReply()).id;
      conversation = replyId;
    }
    const name = threadName(question, attachment?.name);
    const output = new InteractionOutput(
      interaction,
      replyId ? { channelId: interaction.channelId, messageId: replyId, name } : undefined,
    );
    const chat: ChatMessage = {
      platform: 'discord',
      conversation,
      user: interaction.user.id,
      ...(interaction.guildId ? { server: interaction.guildId } : {}),
      channel:
        inThread && channel?.isThread() ? (channel.parentId ?? interaction.channelId) : interaction.channelId,
      text: question,
      images: attachment ? [toIncomingImage(attachment)] : [],
      addressed: true,
      messageId: interaction.id,
    };
    await options.core.handle(chat, output);

    if (!output.used) {
      // The core chose silence (allow-list): remove the "thinking…" placeholder.
      await interaction
        .deleteReply()
        .catch((err) => logger.debug('could not delete the deferred reply', err));
      return;
    }
    if (replyId && (await options.core.hasPicture?.('discord', conversation))) {
      await openThreadOnReply(interaction, name).catch((err) =>
        logger.warn('could not open a thread on the /describe answer', err),
      );
    }
  }

  function canOpenThread(message: Message): boolean {
    const channel = message.channel;
    if (channel.type !== ChannelType.GuildText && channel.type !== ChannelType.GuildAnnouncement)
      return false;
    const permissions = channel.permissionsFor(me);
    // Unknown permissions: try, and fall back to a reply if Discord refuses.
    if (!permissions) return true;
    return permissions.has([
      PermissionFlagsBits.CreatePublicThreads,
      PermissionFlagsBits.SendMessagesInThreads,
    ]);
  }

  function channelAllowsThreads(interaction: ChatInputCommandInteraction): boolean {
    const channel = interaction.channel;
    if (
      !channel ||
      (channel.type !== ChannelType.GuildText && channel.type !== ChannelType.GuildAnnouncement)
    ) {
      return false;
    }
    const permissions = interaction.appPermissions;
    return permissions.has([
      PermissionFlagsBits.CreatePublicThreads,
      PermissionFlagsBits.SendMessagesInThreads,
    ]);
  }

  async function openThreadOnReply(interaction: ChatInputCommandInteraction, name: string): Promise<void> {
    const reply = await interaction.fetchReply();
    await reply.startThread({ name, autoArchiveDuration: 1440 });
  }

  return {
    name: 'discord',
    client,
    messageContent,
    async stop() {
      accepting = false;
      await waitWithGrace(inflight, options.stopGraceMs ?? 10_000);
      await client.destroy();
    },
  };
}

function stripMentions(content: string, botId: string): string {
  return content
    .replace(new RegExp(`<@!?${botId}>`, 'g'), ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

async function connect(
  config: DiscordConfig,
  messageContent: boolean,
  logger: Logger,
  readyTimeoutMs = 30_000,
): Promise<Client> {
  const client = createDiscordClient(config, { messageContent });
  client.on('error', (err) => logger.error('Discord client error', err));
  client.on('warn', (warning) => logger.warn(`Discord: ${warning}`));
  client.on('shardError', (err) => logger.warn('Discord connection error', err));
  const ready = once(client, 'clientReady', { signal: AbortSignal.timeout(readyTimeoutMs) });
  ready.catch(() => {});
  try {
    await client.login(config.token);
    await ready;
  } catch (err) {
    await client.destroy().catch(() => {});
    throw err;
  }
  return client;
}

/** What an unrecoverable gateway close means, in the words used at start-up. */
export function explainFatalClose(code: number): string {
  if (code === 4004) {
    return (
      'Discord closed the connection: DISCORD_TOKEN is no longer valid (4004; the token was probably reset). ' +
      'Copy a fresh token from the Developer Portal (your app → Bot → Reset Token) into .env and restart the bot.'
    );
  }
  if (code === 4014) {
    return (
      'Discord closed the connection: the Message Content intent is no longer allowed (4014). Turn MESSAGE ' +
      'CONTENT INTENT back on (https://discord.com/developers/applications → your app → Bot → Privileged Gateway ' +
      'Intents) and restart the bot, which otherwise starts without it and needs mentions for follow-ups.'
    );
  }
  return `Discord closed the connection for good (close code ${code}); restart the bot once the cause is fixed.`;
}

function explainLoginError(err: unknown): Error {
  const message = String((err as Error)?.message ?? err);
  if (/TokenInvalid|invalid token|401|Authentication failed/i.test(message)) {
    return new UserFacingError(
      'discord_token',
      'Discord rejected DISCORD_TOKEN. Copy a fresh token from the Developer Portal (your app → Bot → Reset ' +
        'Token) into .env.',
      { cause: err },
    );
  }
  return new UserFacingError('discord_unreachable', `Could not connect to Discord: ${message}`, {
    cause: err,
  });
}
