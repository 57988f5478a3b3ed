/**
 * Small bounded in-memory stores. Slack retries events and sends a mention twice (as `app_mention` and as
 * `message`), so the adapter remembers what it has already taken on; it also remembers each channel's latest image
 * for `/describe`. Both only need to survive Slack's retry window, so memory with an upper bound is enough.
 */

/** A Map that forgets its oldest entries past `capacity`. */
export class BoundedMap<K, V> {
  readonly #entries = new Map<K, V>();
  constructor(readonly capacity: number) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive');
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  has(key: K): boolean {
    return this.#entries.has(key);
  }

  set(key: K, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    while (this.#entries.size > this.capacity) {
      const oldest = this.#entries.keys().next().value as K;
      this.#entries.delete(oldest);
    }
  }
}

/** Keys seen recently; `claim` answers true only the first time a key comes by. */
export class OnceFilter {
  readonly #seen: BoundedMap<string, true>;
  constructor(capacity = 10_000) {
    this.#seen = new BoundedMap(capacity);
  }

  /** Marks every key as seen; true when none of them had been seen before. */
  claim(...keys: string[]): boolean {
    const fresh = keys.every((key) => !this.#seen.has(key));
    for (const key of keys) this.#seen.set(key, true);
    return fresh;
  }
}

/** Orders Slack timestamps ("1712345678.000200") exactly; a float would lose the last digits. */
export function compareSlackTs(a: string, b: string): number {
  const [aSec = '0', aMicro = '0'] = a.split('.');
  const [bSec = '0', bMicro = '0'] = b.split('.');
  const bySeconds = Number(aSec) - Number(bSec);
  if (bySeconds !== 0) return Math.sign(bySeconds);
  return Math.sign(Number(aMicro.padEnd(6, '0')) - Number(bMicro.padEnd(6, '0')));
}
