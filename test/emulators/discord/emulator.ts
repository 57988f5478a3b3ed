/**
 * A small Discord for tests on 127.0.0.1: the REST routes the bot uses, a CDN for attachments and the WebSocket
 * gateway. The real discord.js client talks to it through `rest.api` (DISCORD_API_URL) and the gateway URL
 * it returns from `/gateway/bot`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ChannelType, GatewayIntentBits, InteractionResponseType } from 'discord.js';
import { Gateway, type GatewaySession, shardOf } from './gateway.js';
import {
  dmChannel,
  type EmulatedAttachment,
  type EmulatedChannel,
  type EmulatedMessage,
  type EmulatedUser,
  MEMBER_PERMISSIONS,
  member,
  snowflake,
  textChannel,
  threadChannel,
  user,
  wire,
} from './payloads.js';

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
  status: number;
  at: number;
}

export interface AttachmentInput {
  name: string;
  contentType?: string;
  bytes: Uint8Array;
  /** Size to declare; the real size by default. */
  declaredSize?: number;
}

export interface Interaction {
  id: string;
  token: string;
  channelId: string;
  dispatchedAt: number;
  callbacks: { type: number; at: number; body: unknown }[];
  original?: EmulatedMessage;
  originalDeleted: boolean;
  followUps: EmulatedMessage[];
}

interface RateLimitRule {
  method: string;
  path: RegExp;
  retryAfter: number;
  remaining: number;
}

export interface EmulatorOptions {
  token?: string;
  /** The application has not enabled the Message Content intent. */
  disallowMessageContent?: boolean;
  /** What `/gateway/bot` recommends (`shards`), for clients that shard 'auto'. Default 1. */
  recommendedShards?: number;
}

type Handler = (
  req: IncomingMessage,
  params: string[],
  body: unknown,
) => Promise<[number, unknown?]> | [number, unknown?];

export class DiscordEmulator {
  readonly token: string;
  readonly bot: EmulatedUser = user('blip2-bot', true);
  readonly appId = this.bot.id;
  readonly recommendedShards: number;
  readonly guildId = snowflake();
  readonly users = { alice: user('alice'), bob: user('bob'), mallory: user('mallory') };
  readonly channels: { general: EmulatedChannel; noThreads: EmulatedChannel; dm: EmulatedChannel };
  readonly channelById = new Map<string, EmulatedChannel>();
  readonly messages = new Map<string, EmulatedMessage>();
  readonly interactions = new Map<string, Interaction>();
  readonly requests: RecordedRequest[] = [];
  readonly typing = new Map<string, number>();
  readonly commands = new Map<string, unknown[]>();
  disallowMessageContent: boolean;

  private readonly files = new Map<string, { bytes: Uint8Array; contentType?: string }>();
  private readonly rateLimits: RateLimitRule[] = [];
  private readonly routes: { method: string; pattern: RegExp; handler: Handler }[] = [];
  private server!: Server;
  private gateway!: Gateway;
  private base = '';

  private constructor(options: EmulatorOptions) {
    this.token = options.token ?? 'emulator-token.discord.local';
    this.disallowMessageContent = options.disallowMessageContent ?? false;
    this.recommendedShards = options.recommendedShards ?? 1;
    const general = textChannel(this.guildId, 'general');
    const noThreads = textChannel(this.guildId, 'no-threads', true);
    const dm = dmChannel(this.users.alice);
    this.channels = { general, noThreads, dm };
    for (const channel of [general, noThreads, dm]) this.channelById.set(channel.id, channel);
    this.defineRoutes();
  }

  static async start(options: EmulatorOptions = {}): Promise<DiscordEmulator> {
    const emulator = new DiscordEmulator(options);
    await emulator.listen();
    return emulator;
  }

  /** REST base for DISCORD_API_URL. */
  get apiUrl(): string {
    return `${this.base}/api`;
  }

  get gatewayIdentifies(): { intents: number; shard: [number, number] }[] {
    return this.gateway.identifies;
  }

  /** Discord ends every gateway session with a close code (4004 token reset, 4014 intent switched off). */
  closeGateway(code: number, reason = 'closed by the emulator'): void {
    this.gateway.closeSessions(code, reason);
  }

  private async listen(): Promise<void> {
    this.server = createServer((req, res) => {
      this.serve(req, res).catch((err) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ message: String(err), code: 0 }));
      });
    });
    this.gateway = new Gateway({
      server: this.server,
      path: '/gateway',
      token: this.token,
      disallowMessageContent: () => this.disallowMessageContent,
      onIdentify: (session) => this.readyPayloads(session.shard),
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.base = `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    await this.gateway.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ------------------------------------------------------------------------------------------------------------
  // What tests do as people

  /** A person posts a message; returns it once dispatched to the bot. */
  userMessage(input: {
    channelId: string;
    author?: EmulatedUser;
    content?: string;
    mention?: boolean;
    attachments?: AttachmentInput[];
    replyTo?: string;
  }): EmulatedMessage {
    const channel = this.channelById.get(input.channelId);
    if (!channel) throw new Error(`no channel ${input.channelId}`);
    const author = input.author ?? this.users.alice;
    const id = snowflake();
    const mention = input.mention ?? false;
    const content = `${mention ? `<@${this.bot.id}> ` : ''}${input.content ?? ''}`.trim();
    const message: EmulatedMessage = {
      id,
      channel_id: channel.id,
      channel_type: channel.type,
      ...(channel.guild_id ? { guild_id: channel.guild_id, member: member(author) } : {}),
      author,
      content,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: mention ? [this.bot] : [],
      mention_roles: [],
      attachments: (input.attachments ?? []).map((a) => this.storeAttachment(channel.id, a)),
      embeds: [],
      pinned: false,
      type: input.replyTo ? 19 : 0,
      flags: 0,
      ...(input.replyTo ? { message_reference: { message_id: input.replyTo, channel_id: channel.id } } : {}),
      history: [content],
    };
    this.messages.set(id, message);
    channel.last_message_id = id;
    this.gateway.dispatch('MESSAGE_CREATE', wire(message), (session, data) =>
      this.withoutPrivilegedContent(session, data as ReturnType<typeof wire>),
    );
    return message;
  }

  /** A person runs `/describe`; returns the interaction to watch. */
  slashCommand(input: {
    channelId: string;
    author?: EmulatedUser;
    name?: string;
    attachment?: AttachmentInput;
    question?: string;
  }): Interaction {
    const channel = this.channelById.get(input.channelId);
    if (!channel) throw new Error(`no channel ${input.channelId}`);
    const author = input.author ?? this.users.alice;
    const id = snowflake();
    const token = `interaction-token-${id}`;
    const options: unknown[] = [];
    const resolved: { attachments: Record<string, EmulatedAttachment> } = { attachments: {} };
    if (input.attachment) {
      const attachment = this.storeAttachment(channel.id, input.attachment);
      resolved.attachments[attachment.id] = attachment;
      options.push({ name: 'image', type: 11, value: attachment.id });
    }
    if (input.question) options.push({ name: 'question', type: 3, value: input.question });
    const interaction: Interaction = {
      id,
      token,
      channelId: channel.id,
      dispatchedAt: Date.now(),
      callbacks: [],
      originalDeleted: false,
      followUps: [],
    };
    this.interactions.set(id, interaction);
    const inGuild = Boolean(channel.guild_id);
    this.gateway.dispatch('INTERACTION_CREATE', {
      id,
      application_id: this.appId,
      type: 2,
      token,
      version: 1,
      channel_id: channel.id,
      channel: this.channelPayload(channel),
      ...(inGuild
        ? {
            guild_id: channel.guild_id,
            member: { ...member(author), permissions: MEMBER_PERMISSIONS.toString() },
            context: 0,
          }
        : { user: author, context: 1 }),
      // As Discord does: the bot's permissions in this channel, its overwrites applied.
      app_permissions: channelPermissions(channel).toString(),
      locale: 'en-US',
      guild_locale: 'en-US',
      entitlements: [],
      authorizing_integration_owners: inGuild ? { '0': channel.guild_id } : { '1': author.id },
      attachment_size_limit: 25 * 1024 * 1024,
      data: { id: snowflake(), name: input.name ?? 'describe', type: 1, options, resolved },
    });
    return interaction;
  }

  /** The next `times` requests matching get 429 with `retry_after` seconds. */
  rateLimit(method: string, path: RegExp, retryAfterSeconds: number, times = 1): void {
    this.rateLimits.push({ method, path, retryAfter: retryAfterSeconds, remaining: times });
  }

  /** Messages the bot posted in a channel (or thread), oldest first. */
  botMessages(channelId: string): EmulatedMessage[] {
    return [...this.messages.values()].filter(
      (m) => m.channel_id === channelId && m.author.id === this.bot.id,
    );
  }

  thread(id: string): EmulatedChannel | undefined {
    const channel = this.channelById.get(id);
    return channel?.type === ChannelType.PublicThread ? channel : undefined;
  }

  /** Polls until `check` returns a value (not undefined/false), or fails with `what` after `timeoutMs`. */
  async waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Plumbing

  private storeAttachment(channelId: string, input: AttachmentInput): EmulatedAttachment {
    const id = snowflake();
    const path = `/attachments/${channelId}/${id}/${encodeURIComponent(input.name)}`;
    this.files.set(path, {
      bytes: input.bytes,
      ...(input.contentType ? { contentType: input.contentType } : {}),
    });
    return {
      id,
      filename: input.name,
      size: input.declaredSize ?? input.bytes.byteLength,
      url: `${this.base}${path}?ex=expiring`,
      proxy_url: `${this.base}${path}`,
      ...(input.contentType ? { content_type: input.contentType } : {}),
    };
  }

  private withoutPrivilegedContent(session: GatewaySession, data: ReturnType<typeof wire>) {
    if (session.intents & GatewayIntentBits.MessageContent) return data;
    const mentioned = data.mentions.some((u) => u.id === this.bot.id);
    const dm = !data.guild_id;
    if (mentioned || dm || data.author.id === this.bot.id) return data;
    return { ...data, content: '', attachments: [], embeds: [] };
  }

  private channelPayload(channel: EmulatedChannel) {
    return channel;
  }

  private readyPayloads(shard: [number, number]): { ready: unknown; guilds: unknown[] } {
    const mine = shardOf(this.guildId, shard[1]) === shard[0];
    const threads = [...this.channelById.values()].filter((c) => c.type === ChannelType.PublicThread);
    const ready = {
      v: 10,
      user: { ...this.bot, verified: true, mfa_enabled: false, flags: 0 },
      guilds: mine ? [{ id: this.guildId, unavailable: true }] : [],
      session_id: `session-${snowflake()}`,
      resume_gateway_url: `${this.base.replace('http', 'ws')}/gateway`,
      shard,
      application: { id: this.appId, flags: 0 },
      private_channels: [],
      relationships: [],
    };
    const guild = {
      id: this.guildId,
      name: 'Emulated Server',
      icon: null,
      owner_id: this.users.bob.id,
      afk_timeout: 300,
      verification_level: 0,
      default_message_notifications: 0,
      explicit_content_filter: 0,
      features: [],
      mfa_level: 0,
      system_channel_flags: 0,
      premium_tier: 0,
      preferred_locale: 'en-US',
      nsfw_level: 0,
      large: false,
      unavailable: false,
      member_count: 4,
      joined_at: new Date(0).toISOString(),
      roles: [
        {
          id: this.guildId,
          name: '@everyone',
          permissions: MEMBER_PERMISSIONS.toString(),
          position: 0,
          color: 0,
          hoist: false,
          managed: false,
          mentionable: false,
          flags: 0,
        },
      ],
      emojis: [],
      stickers: [],
      members: [member(this.bot)],
      channels: [this.channels.general, this.channels.noThreads].map((c) => {
        const { guild_id: _g, ...rest } = c;
        return rest;
      }),
      threads,
      presences: [],
      voice_states: [],
      stage_instances: [],
      guild_scheduled_events: [],
    };
    return { ready, guilds: mine ? [guild] : [] };
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.base);
    const method = req.method ?? 'GET';
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });

    if (method === 'GET' && url.pathname.startsWith('/attachments/')) {
      const file = this.files.get(url.pathname);
      this.record(method, url.pathname, undefined, file ? 200 : 404);
      if (!file) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, {
        'content-type': file.contentType ?? 'application/octet-stream',
        'content-length': String(file.bytes.byteLength),
      });
      res.end(Buffer.from(file.bytes));
      return;
    }

    const path = decodeURIComponent(url.pathname).replace(/^\/api\/v10/, '');
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return this.reply(res, method, path, body, 400, { message: 'Cannot parse body', code: 50109 });
      }
    }

    const limit = this.rateLimits.find((r) => r.remaining > 0 && r.method === method && r.path.test(path));
    if (limit) {
      limit.remaining -= 1;
      res.setHeader('Retry-After', String(limit.retryAfter));
      res.setHeader('X-RateLimit-Scope', 'user');
      return this.reply(res, method, path, body, 429, {
        message: 'You are being rate limited.',
        retry_after: limit.retryAfter,
        global: false,
      });
    }

    const needsAuth = !path.startsWith('/interactions/') && !path.startsWith('/webhooks/');
    if (needsAuth && req.headers.authorization !== `Bot ${this.token}`) {
      return this.reply(res, method, path, body, 401, { message: '401: Unauthorized', code: 0 });
    }

    for (const route of this.routes) {
      if (route.method !== method) continue;
      const match = route.pattern.exec(path);
      if (!match) continue;
      const [status, payload] = await route.handler(req, match.slice(1), body);
      return this.reply(res, method, path, body, status, payload);
    }
    return this.reply(res, method, path, body, 404, { message: '404: Not Found', code: 0 });
  }

  private record(method: string, path: string, body: unknown, status: number): void {
    this.requests.push({ method, path, body, status, at: Date.now() });
  }

  private reply(
    res: ServerResponse,
    method: string,
    path: string,
    body: unknown,
    status: number,
    payload?: unknown,
  ) {
    this.record(method, path, body, status);
    if (payload === undefined) {
      res.writeHead(status).end();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  }

  private route(method: string, pattern: string, handler: Handler): void {
    const regex = new RegExp(`^${pattern.replace(/:(\w+)/g, '([^/]+)')}$`);
    this.routes.push({ method, pattern: regex, handler });
  }

  private botMessage(
    channelId: string,
    content: string,
    extra: Partial<EmulatedMessage> = {},
  ): EmulatedMessage {
    const channel = this.channelById.get(channelId);
    const message: EmulatedMessage = {
      id: snowflake(),
      channel_id: channelId,
      ...(channel ? { channel_type: channel.type } : {}),
      ...(channel?.guild_id ? { guild_id: channel.guild_id } : {}),
      author: this.bot,
      content,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: [],
      embeds: [],
      pinned: false,
      type: 0,
      flags: 0,
      ...extra,
      history: [content],
    };
    this.messages.set(message.id, message);
    if (channel) channel.last_message_id = message.id;
    return message;
  }

  private edit(message: EmulatedMessage, content: unknown): EmulatedMessage {
    if (typeof content === 'string') {
      message.content = content;
      message.history.push(content);
      message.edited_timestamp = new Date().toISOString();
    }
    return message;
  }

  private checkContent(body: unknown): [number, unknown] | undefined {
    const content = (body as { content?: unknown } | undefined)?.content;
    if (typeof content !== 'string' || content.length === 0) {
      return [400, { message: 'Cannot send an empty message', code: 50006 }];
    }
    if (content.length > 2000) {
      return [400, { message: 'Invalid Form Body: content must be 2000 or fewer in length.', code: 50035 }];
    }
    return undefined;
  }

  private defineRoutes(): void {
    this.route('GET', '/gateway/bot', () => [
      200,
      {
        url: `${this.base.replace('http', 'ws')}/gateway`,
        shards: this.recommendedShards,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
      },
    ]);
    this.route('GET', '/users/@me', () => [200, this.bot]);
    this.route('GET', '/applications/@me', () => [200, { id: this.appId, name: 'blip2-bot', flags: 0 }]);

    this.route('GET', '/channels/:id', (_req, [id]) => {
      const channel = this.channelById.get(id!);
      return channel ? [200, channel] : [404, { message: 'Unknown Channel', code: 10003 }];
    });
    this.route('POST', '/channels/:id/typing', (_req, [id]) => {
      this.typing.set(id!, (this.typing.get(id!) ?? 0) + 1);
      return [204];
    });
    this.route('POST', '/channels/:id/messages', (_req, [id], body) => {
      if (!this.channelById.has(id!)) return [404, { message: 'Unknown Channel', code: 10003 }];
      const invalid = this.checkContent(body);
      if (invalid) return invalid;
      const b = body as { content: string; message_reference?: { message_id: string } };
      const message = this.botMessage(id!, b.content, {
        ...(b.message_reference
          ? { type: 19, message_reference: { message_id: b.message_reference.message_id, channel_id: id! } }
          : {}),
      });
      this.gateway.dispatch('MESSAGE_CREATE', wire(message));
      return [200, wire(message)];
    });
    this.route('GET', '/channels/:id/messages/:mid', (_req, [id, mid]) => {
      const message = this.messages.get(mid!);
      return message && message.channel_id === id
        ? [200, wire(message)]
        : [404, { message: 'Unknown Message', code: 10008 }];
    });
    this.route('PATCH', '/channels/:id/messages/:mid', (_req, [id, mid], body) => {
      const message = this.messages.get(mid!);
      if (!message || message.channel_id !== id || message.author.id !== this.bot.id) {
        return [404, { message: 'Unknown Message', code: 10008 }];
      }
      const invalid = this.checkContent(body);
      if (invalid) return invalid;
      this.edit(message, (body as { content: string }).content);
      this.gateway.dispatch('MESSAGE_UPDATE', wire(message));
      return [200, wire(message)];
    });
    this.route('POST', '/channels/:id/messages/:mid/threads', (_req, [id, mid], body) => {
      const parent = this.channelById.get(id!);
      const message = this.messages.get(mid!);
      if (!parent || !message) return [404, { message: 'Unknown Message', code: 10008 }];
      const denied = parent.permission_overwrites?.some((o) => BigInt(o.deny) & (1n << 35n));
      if (denied || parent.type !== ChannelType.GuildText) {
        return [403, { message: 'Missing Permissions', code: 50013 }];
      }
      if (this.channelById.has(mid!)) {
        return [400, { message: 'A thread has already been created for this message', code: 160004 }];
      }
      const name = String((body as { name?: unknown })?.name ?? 'thread').slice(0, 100);
      const thread = threadChannel(parent, mid!, name, this.bot.id);
      this.channelById.set(thread.id, thread);
      this.gateway.dispatch('THREAD_CREATE', { ...thread, newly_created: true });
      return [201, thread];
    });

    this.route('POST', '/interactions/:id/:token/callback', (_req, [id, token], body) => {
      const interaction = this.interactions.get(id!);
      if (!interaction || interaction.token !== token) {
        return [404, { message: 'Unknown interaction', code: 10062 }];
      }
      if (interaction.callbacks.length > 0) {
        return [400, { message: 'Interaction has already been acknowledged.', code: 40060 }];
      }
      if (Date.now() - interaction.dispatchedAt > 3000)
        return [404, { message: 'Unknown interaction', code: 10062 }];
      const type = Number((body as { type?: unknown })?.type);
      interaction.callbacks.push({ type, at: Date.now(), body });
      if (type === InteractionResponseType.ChannelMessageWithSource) {
        const content = (body as { data?: { content?: string } }).data?.content ?? '';
        interaction.original = this.botMessage(interaction.channelId, content, {
          webhook_id: this.appId,
          application_id: this.appId,
        });
      } else if (type === InteractionResponseType.DeferredChannelMessageWithSource) {
        interaction.original = this.botMessage(interaction.channelId, '', {
          webhook_id: this.appId,
          application_id: this.appId,
          flags: 1 << 7,
        });
        interaction.original.history = [];
      }
      return [204];
    });
    const byToken = (appId: string | undefined, token: string | undefined) => {
      if (appId !== this.appId) return undefined;
      return [...this.interactions.values()].find((i) => i.token === token);
    };
    const unknownWebhook: [number, unknown] = [404, { message: 'Unknown Webhook', code: 10015 }];
    this.route('GET', '/webhooks/:app/:token/messages/@original', (_req, [app, token]) => {
      const interaction = byToken(app, token);
      if (!interaction?.original || interaction.originalDeleted) return unknownWebhook;
      return [200, wire(interaction.original)];
    });
    this.route('PATCH', '/webhooks/:app/:token/messages/:mid', (_req, [app, token, mid], body) => {
      const interaction = byToken(app, token);
      if (!interaction?.original || interaction.originalDeleted) return unknownWebhook;
      const invalid = this.checkContent(body);
      if (invalid) return invalid;
      const target =
        mid === '@original' ? interaction.original : interaction.followUps.find((m) => m.id === mid);
      if (!target) return [404, { message: 'Unknown Message', code: 10008 }];
      target.flags &= ~(1 << 7);
      this.edit(target, (body as { content: string }).content);
      return [200, wire(target)];
    });
    this.route('DELETE', '/webhooks/:app/:token/messages/:mid', (_req, [app, token, mid]) => {
      const interaction = byToken(app, token);
      if (!interaction?.original) return unknownWebhook;
      if (mid === '@original') {
        interaction.originalDeleted = true;
        this.messages.delete(interaction.original.id);
      }
      return [204];
    });
    this.route('POST', '/webhooks/:app/:token', (_req, [app, token], body) => {
      const interaction = byToken(app, token);
      if (!interaction || interaction.callbacks.length === 0) return unknownWebhook;
      const invalid = this.checkContent(body);
      if (invalid) return invalid;
      const message = this.botMessage(interaction.channelId, (body as { content: string }).content, {
        webhook_id: this.appId,
        application_id: this.appId,
      });
      interaction.followUps.push(message);
      return [200, wire(message)];
    });

    const putCommands: Handler = (_req, params, body) => {
      const [app, guild] = params;
      if (app !== this.appId) return [404, { message: 'Unknown Application', code: 10002 }];
      const list = (Array.isArray(body) ? body : []).map((c) => ({
        ...(c as object),
        id: snowflake(),
        application_id: this.appId,
        version: snowflake(),
        ...(guild ? { guild_id: guild } : {}),
      }));
      this.commands.set(guild ?? 'global', list);
      return [200, list];
    };
    this.route('PUT', '/applications/:app/commands', putCommands);
    this.route('PUT', '/applications/:app/guilds/:guild/commands', putCommands);
  }
}

export type { EmulatedChannel, EmulatedMessage, EmulatedUser } from './payloads.js';
export { snowflake } from './payloads.js';

/** The member permissions minus what the channel's overwrites deny (enough for the emulated channels). */
function channelPermissions(channel: EmulatedChannel): bigint {
  let permissions = MEMBER_PERMISSIONS;
  for (const overwrite of channel.permission_overwrites ?? []) permissions &= ~BigInt(overwrite.deny);
  return permissions;
}
