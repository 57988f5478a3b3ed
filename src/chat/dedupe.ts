import type Keyv from 'keyv';

/**
 * Remembers handled message ids so a redelivered event (Slack retries, a gateway replay) is answered once.
 * The in-memory set answers synchronously, which closes the race between two deliveries arriving together;
 * the optional keyv store carries the memory across restarts.
 */
export class MessageDeduper {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly store?: Keyv,
    private readonly ttlMs = 24 * 3600 * 1000,
    private readonly maxEntries = 50_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** True the first time `id` is claimed, false afterwards. */
  async claim(id: string): Promise<boolean> {
    const now = this.now();
    const at = this.seen.get(id);
    if (at !== undefined && now - at < this.ttlMs) return false;
    this.seen.set(id, now);
    if (this.seen.size > this.maxEntries) {
      for (const key of this.seen.keys()) {
        this.seen.delete(key);
        if (this.seen.size <= this.maxEntries * 0.9) break;
      }
    }
    if (!this.store) return true;
    if (await this.store.get(id)) return false;
    await this.store.set(id, 1, this.ttlMs);
    return true;
  }
}
