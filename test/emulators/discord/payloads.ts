/** Builders for the Discord API objects the emulator hands out, with just the fields discord.js reads. */
import { ChannelType, PermissionFlagsBits } from 'discord.js';

const DISCORD_EPOCH = 1420070400000n;
let increment = 0n;

/** Snowflakes that grow with time, as Discord's do (discord.js derives timestamps from them). */
export function snowflake(): string {
  increment = (increment + 1n) & 0xfffn;
  return (((BigInt(Date.now()) - DISCORD_EPOCH) << 22n) | (1n << 17n) | increment).toString();
}

export interface EmulatedUser {
  id: string;
  username: string;
  global_name: string | null;
  discriminator: string;
  avatar: null;
  bot?: boolean;
}

export function user(username: string, bot = false): EmulatedUser {
  return {
    id: snowflake(),
    username,
    global_name: username,
    discriminator: '0',
    avatar: null,
    ...(bot ? { bot } : {}),
  };
}

/** Everything a bot needs in a text channel, threads included. */
export const MEMBER_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.SendMessagesInThreads |
  PermissionFlagsBits.CreatePublicThreads |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.UseApplicationCommands;

export interface EmulatedChannel {
  id: string;
  type: number;
  guild_id?: string;
  name?: string;
  position?: number;
  parent_id?: string | null;
  owner_id?: string;
  permission_overwrites?: { id: string; type: 0 | 1; allow: string; deny: string }[];
  recipients?: EmulatedUser[];
  thread_metadata?: {
    archived: boolean;
    auto_archive_duration: number;
    archive_timestamp: string;
    locked: boolean;
  };
  member_count?: number;
  message_count?: number;
  last_message_id?: string | null;
}

export function textChannel(guildId: string, name: string, denyThreads = false): EmulatedChannel {
  return {
    id: snowflake(),
    type: ChannelType.GuildText,
    guild_id: guildId,
    name,
    position: 0,
    parent_id: null,
    permission_overwrites: denyThreads
      ? [{ id: guildId, type: 0, allow: '0', deny: PermissionFlagsBits.CreatePublicThreads.toString() }]
      : [],
    last_message_id: null,
  };
}

export function dmChannel(recipient: EmulatedUser): EmulatedChannel {
  return { id: snowflake(), type: ChannelType.DM, recipients: [recipient], last_message_id: null };
}

export function threadChannel(
  parent: EmulatedChannel,
  id: string,
  name: string,
  ownerId: string,
): EmulatedChannel {
  return {
    id,
    type: ChannelType.PublicThread,
    ...(parent.guild_id ? { guild_id: parent.guild_id } : {}),
    name,
    parent_id: parent.id,
    owner_id: ownerId,
    member_count: 1,
    message_count: 0,
    thread_metadata: {
      archived: false,
      auto_archive_duration: 1440,
      archive_timestamp: new Date().toISOString(),
      locked: false,
    },
    last_message_id: null,
  };
}

export function member(u: EmulatedUser) {
  return {
    user: u,
    roles: [] as string[],
    joined_at: new Date(0).toISOString(),
    deaf: false,
    mute: false,
    flags: 0,
    nick: null,
  };
}

export interface EmulatedAttachment {
  id: string;
  filename: string;
  size: number;
  url: string;
  proxy_url: string;
  content_type?: string;
}

export interface EmulatedMessage {
  id: string;
  channel_id: string;
  /** Sent with MESSAGE_CREATE; discord.js builds uncached DM channels from it. */
  channel_type?: number;
  guild_id?: string;
  author: EmulatedUser;
  member?: ReturnType<typeof member>;
  content: string;
  timestamp: string;
  edited_timestamp: string | null;
  tts: boolean;
  mention_everyone: boolean;
  mentions: EmulatedUser[];
  mention_roles: string[];
  attachments: EmulatedAttachment[];
  embeds: unknown[];
  pinned: boolean;
  type: number;
  flags: number;
  webhook_id?: string;
  application_id?: string;
  message_reference?: { message_id: string; channel_id: string; guild_id?: string };
  /** Not part of Discord's payload: every content this message had, for tests. */
  history: string[];
}

/** The message as sent over the wire (without the emulator's bookkeeping). */
export function wire(message: EmulatedMessage): Omit<EmulatedMessage, 'history'> {
  const { history: _history, ...rest } = message;
  return rest;
}
