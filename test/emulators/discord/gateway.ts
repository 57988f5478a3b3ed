/** The emulator's WebSocket gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeat ACKs, dispatches. */
import type { Server } from 'node:http';
import { GatewayIntentBits, GatewayOpcodes } from 'discord.js';
import { type WebSocket, WebSocketServer } from 'ws';

export interface GatewaySession {
  socket: WebSocket;
  intents: number;
  identified: boolean;
  sequence: number;
  /** `[shard id, shard count]` from IDENTIFY (`[0, 1]` when the client does not shard). */
  shard: [number, number];
}

/** Discord's routing: a guild's events go to shard (guild_id >> 22) % count; DMs to shard 0. */
export function shardOf(guildId: string | undefined, count: number): number {
  return guildId ? Number((BigInt(guildId) >> 22n) % BigInt(count)) : 0;
}

export interface GatewayOptions {
  server: Server;
  path: string;
  token: string;
  /** Close with 4014 when a client asks for the Message Content intent (the app has not enabled it). */
  disallowMessageContent: () => boolean;
  /** READY and GUILD_CREATE payloads, built when a client identifies. */
  onIdentify: (session: GatewaySession) => { ready: unknown; guilds: unknown[] };
}

export class Gateway {
  readonly sessions = new Set<GatewaySession>();
  identifies: { intents: number; shard: [number, number] }[] = [];
  private readonly wss: WebSocketServer;

  constructor(private readonly options: GatewayOptions) {
    this.wss = new WebSocketServer({ server: options.server, path: options.path });
    this.wss.on('connection', (socket) => this.accept(socket));
  }

  private accept(socket: WebSocket): void {
    const session: GatewaySession = { socket, intents: 0, identified: false, sequence: 0, shard: [0, 1] };
    this.sessions.add(session);
    socket.on('close', () => this.sessions.delete(session));
    socket.on('message', (raw) => this.receive(session, raw.toString()));
    this.send(session, { op: GatewayOpcodes.Hello, d: { heartbeat_interval: 41_250 } });
  }

  private receive(session: GatewaySession, raw: string): void {
    let payload: { op: number; d: unknown };
    try {
      payload = JSON.parse(raw);
    } catch {
      session.socket.close(4002, 'Decode error');
      return;
    }
    switch (payload.op) {
      case GatewayOpcodes.Heartbeat:
        this.send(session, { op: GatewayOpcodes.HeartbeatAck });
        return;
      case GatewayOpcodes.Identify: {
        const d = payload.d as { token?: string; intents?: number; shard?: [number, number] };
        if (d.token !== this.options.token) {
          session.socket.close(4004, 'Authentication failed.');
          return;
        }
        const intents = Number(d.intents ?? 0);
        const shard: [number, number] = Array.isArray(d.shard)
          ? [Number(d.shard[0]), Number(d.shard[1])]
          : [0, 1];
        if (!(shard[1] >= 1 && shard[0] >= 0 && shard[0] < shard[1])) {
          session.socket.close(4010, 'Invalid shard.');
          return;
        }
        this.identifies.push({ intents, shard });
        if (this.options.disallowMessageContent() && intents & GatewayIntentBits.MessageContent) {
          session.socket.close(4014, 'Disallowed intent(s).');
          return;
        }
        session.intents = intents;
        session.shard = shard;
        session.identified = true;
        const { ready, guilds } = this.options.onIdentify(session);
        this.dispatchTo(session, 'READY', ready);
        for (const guild of guilds) this.dispatchTo(session, 'GUILD_CREATE', guild);
        return;
      }
      case GatewayOpcodes.Resume:
        // Sessions are not kept: make the client identify again.
        this.send(session, { op: GatewayOpcodes.InvalidSession, d: false });
        return;
      default:
        return;
    }
  }

  private send(session: GatewaySession, payload: unknown): void {
    if (session.socket.readyState === session.socket.OPEN) session.socket.send(JSON.stringify(payload));
  }

  dispatchTo(session: GatewaySession, type: string, data: unknown): void {
    session.sequence += 1;
    this.send(session, { op: GatewayOpcodes.Dispatch, t: type, s: session.sequence, d: data });
  }

  /**
   * Sends an event to every identified client whose shard it belongs to (by its `guild_id`, as Discord routes);
   * `shape` may tailor it per session (intents).
   */
  dispatch(type: string, data: unknown, shape?: (session: GatewaySession, data: unknown) => unknown): void {
    const guildId = (data as { guild_id?: string } | undefined)?.guild_id;
    for (const session of this.sessions) {
      if (!session.identified || shardOf(guildId, session.shard[1]) !== session.shard[0]) continue;
      this.dispatchTo(session, type, shape ? shape(session, data) : data);
    }
  }

  /** Closes every session with `code`, as Discord does after a token reset (4004) or an intent change (4014). */
  closeSessions(code: number, reason: string): void {
    for (const session of this.sessions) session.socket.close(code, reason);
  }

  async close(): Promise<void> {
    for (const session of this.sessions) session.socket.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
