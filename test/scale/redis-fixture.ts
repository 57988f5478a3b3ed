/** A real redis-server per test file (loopback, free port, temp dir), or a reason to skip when it is absent. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasRedisServer, startRedis } from '../../bench/load-run.js';

export const HAS_REDIS = hasRedisServer();
export const REDIS_SKIP_REASON =
  'redis-server is not installed (apt-get install redis-server; .ci/run installs it); skipping the scale-out tests';

if (!HAS_REDIS) console.warn(`[tests] ${REDIS_SKIP_REASON}`);

export async function openRedis(): Promise<{ url: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'blip2-redis-'));
  const redis = await startRedis(dir);
  return {
    url: redis.url,
    close: async () => {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
