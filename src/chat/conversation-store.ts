import type Keyv from 'keyv';
import type { Turn } from '../engine/api.js';

/** What the bot remembers about one conversation: only the image's cache key, never its bytes. */
export interface ConversationState {
  v: 1;
  imageKey: string;
  imageName: string;
  turns: Turn[];
  updatedAt: number;
}

function isState(value: unknown): value is ConversationState {
  const v = value as ConversationState | undefined;
  return !!v && v.v === 1 && typeof v.imageKey === 'string' && Array.isArray(v.turns);
}

export class ConversationStore {
  constructor(
    private readonly keyv: Keyv,
    private readonly ttlMs: number,
  ) {}

  async get(id: string): Promise<ConversationState | undefined> {
    const value = await this.keyv.get(id);
    // A value this version cannot read is treated as no conversation rather than an error.
    return isState(value) ? value : undefined;
  }

  async set(id: string, state: ConversationState): Promise<void> {
    await this.keyv.set(id, state, this.ttlMs > 0 ? this.ttlMs : undefined);
  }

  async delete(id: string): Promise<void> {
    await this.keyv.delete(id);
  }
}
