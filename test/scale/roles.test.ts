/** The roles' start-up checks, and SIGTERM to `node bin/blip2-bot.js start` draining a running answer (issue 14.17). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, spawnBot, stopChild, waitReady } from '../../bench/load-run.js';
import { pngBytes } from '../chat/images.js';

const work = mkdtempSync(join(tmpdir(), 'blip2-roles-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function exitOf(bot: Awaited<ReturnType<typeof spawnBot>>): Promise<number | null> {
  return new Promise((resolve) => {
    if (bot.child.exitCode !== null) resolve(bot.child.exitCode);
    else bot.child.once('exit', (code) => resolve(code));
  });
}

describe('roles', () => {
  it('refuses --role front and worker without QUEUE_URL, and an unreachable queue, with one line and exit 2', async () => {
    const front = await spawnBot(['start', '--role', 'front'], {}, work);
    expect(await exitOf(front)).toBe(2);
    expect(front.output.join('')).toMatch(/--role front needs QUEUE_URL/);
    const worker = await spawnBot(['worker'], {}, work);
    expect(await exitOf(worker)).toBe(2);
    expect(worker.output.join('')).toMatch(/set QUEUE_URL/);
    const unreachable = await spawnBot(['worker'], { QUEUE_URL: 'redis://127.0.0.1:1' }, work);
    expect(await exitOf(unreachable)).toBe(2);
    const text = unreachable.output.join('');
    expect(text).toMatch(/Cannot reach the queue's Redis at 127\.0\.0\.1:1/);
    expect(text).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('on SIGTERM, `node bin/blip2-bot.js start` finishes the running answer, then exits 0', async () => {
    const port = await freePort();
    const bot = await spawnBot(
      ['start'],
      { WEB_PORT: String(port), CACHE_STORE: 'memory', SHUTDOWN_GRACE_SECONDS: '60' },
      work,
    );
    await waitReady(bot);
    const image = Buffer.from(await pngBytes(301)).toString('base64');
    const answer = fetch(`${bot.webUrl}/api/v1/conversations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image, options: { numBeams: 1, maxNewTokens: 120 } }),
    });
    // Running: the health endpoint counts it.
    let running = false;
    for (let i = 0; i < 400 && !running; i++) {
      const h = (await (await fetch(`${bot.healthUrl}/healthz`)).json()) as { active: number };
      running = h.active > 0;
      if (!running) await new Promise((r) => setTimeout(r, 20));
    }
    expect(running).toBe(true);
    const exit = stopChild(bot.child, 30_000);
    const res = await answer;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { answer: { text: string } };
    expect(body.answer.text.length).toBeGreaterThan(0);
    expect(await exit).toBe(0);
  }, 90_000);
});
