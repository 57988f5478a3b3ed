/**
 * The chat core's per-process memories made shared, for fronts scaled out behind one Redis: "was this message
 * already handled?" (Slack may retry an event to another front) and the per-person rate limit. Both are atomic
 * in Redis (SET NX; a Lua sliding window), so two fronts taking the same event or the same person at once agree.
 */
import type { Redis } from 'ioredis';
import type { SharedChatState } from '../chat/core.js';
import { KEY_PREFIX } from './redis.js';

const WINDOW_MS = 60_000;

// A sliding one-minute window in a sorted set: drop old hits, refuse at the limit (answering how long until the
// oldest hit leaves the window), else record this hit.
const TAKE = `
local key, now, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
redis.call('ZREMRANGEBYSCORE', key, 0, now - ${WINDOW_MS})
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, ${WINDOW_MS} - (now - tonumber(oldest[2])))
end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, ${WINDOW_MS})
return 0`;

export function redisChatState(redis: Redis, now: () => number = Date.now): SharedChatState {
  let counter = 0;
  return {
    async claim(id, ttlMs) {
      return (await redis.set(`${KEY_PREFIX}:handled:${id}`, '1', 'PX', Math.max(1, ttlMs), 'NX')) === 'OK';
    },
    async take(key, perMinute) {
      if (perMinute <= 0) return 0;
      const at = now();
      const member = `${at}-${process.pid}-${counter++}`;
      return Number(await redis.eval(TAKE, 1, `${KEY_PREFIX}:rate:${key}`, at, perMinute, member));
    },
  };
}
