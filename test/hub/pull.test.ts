/**
 * `blip2-bot models pull` end to end: the real CLI against the Hub emulator on 127.0.0.1 serving the tiny golden
 * fixture as a sharded repo.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HubEmulator } from '../emulators/hub/server.js';
import { HAS_SHARED, SHARED_SKIP_REASON, TINY_FIXTURE_DIR } from '../helpers/shared.js';
import { runCli } from './cli-runner.js';
import { NEEDED, NOT_NEEDED, SHARDS, shardedFixtureFiles } from './fixture-repo.js';

const TOKEN = 'hf_emulatedTokenForTests123';
const OTHER_TOKEN = 'hf_emulatedTokenWithoutGatedAccess';
const REPO = 'test-org/blip2-tiny';

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

describe.skipIf(!HAS_SHARED)(
  `blip2-bot models pull (Hub emulator)${HAS_SHARED ? '' : ` (${SHARED_SKIP_REASON})`}`,
  () => {
    let files: Record<string, Uint8Array>;
    let work: string;
    let hub: HubEmulator;
    const emulators: HubEmulator[] = [];

    async function emulator(options: Partial<ConstructorParameters<typeof HubEmulator>[0]> = {}) {
      const e = await new HubEmulator({
        repos: {
          [REPO]: { files },
          'test-org/blip2-tiny-gated': { files, gated: true },
          'test-org/blip2-tiny-private': { files, private: true },
        },
        tokens: [TOKEN, OTHER_TOKEN],
        gatedAccess: [TOKEN],
        ...options,
      }).start();
      emulators.push(e);
      return e;
    }

    function pull(args: string[], env: Record<string, string> = {}, endpoint = hub.hubUrl) {
      return runCli(['models', 'pull', ...args], { cwd: work, env: { HF_ENDPOINT: endpoint, ...env } });
    }

    beforeAll(async () => {
      files = await shardedFixtureFiles();
    });
    afterEach(async () => {
      while (emulators.length) await emulators.pop()!.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    async function fresh(options: Partial<ConstructorParameters<typeof HubEmulator>[0]> = {}) {
      work = mkdtempSync(join(tmpdir(), 'blip2-pull-'));
      hub = await emulator(options);
    }

    it('pulls only what conversion needs into an ask-able model dir; a second run downloads nothing', async () => {
      await fresh({ foreignCdn: true });
      const r = await pull([REPO], { HF_TOKEN: TOKEN }).done;
      expect(r.code, r.stderr).toBe(0);
      const out = join(work, 'models', 'blip2-tiny');
      const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      expect(manifest.complete).toBe(true);
      expect(manifest.source.hub).toEqual({
        repo: REPO,
        revision: 'main',
        commit: hub.commitOf(REPO),
        dtype: 'auto',
      });
      expect(manifest.modelId).toMatch(/^blip2-tiny-/);
      expect(r.stdout).toContain(`Pulled ${REPO}`);
      expect(r.stdout).toMatch(/source\s+removed/);
      expect(existsSync(join(work, 'models', '.sources'))).toBe(false);

      // Exactly the needed files, each downloaded once; nothing else.
      const served = new Set(hub.requests.filter((q) => q.bytesSent > 0).map((q) => q.file));
      expect([...served].sort()).toEqual([...NEEDED].sort());
      for (const f of NOT_NEEDED) expect(hub.bytesServed(f)).toBe(0);
      for (const f of NEEDED) expect(hub.bytesServed(f)).toBe(files[f]!.length);
      // LFS files came from the CDN host via a 302.
      for (const s of SHARDS) expect(hub.fileRequests(s).every((q) => q.server === 'cdn')).toBe(true);
      expect(hub.requests.some((q) => q.status === 302)).toBe(true);

      // The token went as Bearer to the Hub, never to the foreign CDN, and was never printed.
      const toHub = hub.requests.filter((q) => q.server === 'hub');
      expect(toHub.length).toBeGreaterThan(0);
      expect(toHub.every((q) => q.authorization === `Bearer ${TOKEN}`)).toBe(true);
      expect(hub.requests.filter((q) => q.server === 'cdn').every((q) => q.authorization === undefined)).toBe(
        true,
      );
      expect(r.stdout + r.stderr).not.toContain(TOKEN);

      // The model answers.
      const ask = await runCli(
        [
          'ask',
          '--model',
          out,
          '--image',
          join(TINY_FIXTURE_DIR, 'a0_scene_320x200.jpg'),
          '--max-new-tokens',
          '3',
          '--json',
        ],
        { cwd: work },
      ).done;
      expect(ask.code, ask.stderr).toBe(0);
      expect(JSON.parse(ask.stdout).ids.length).toBeGreaterThan(0);

      // Idempotent: the second run asks for the revision only.
      const before = hub.requests.length;
      const again = await pull([REPO], { HF_TOKEN: TOKEN }).done;
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/nothing to download/);
      const second = hub.requests.slice(before);
      expect(second.reduce((n, q) => n + q.bytesSent, 0)).toBe(0);
      expect(second.map((q) => q.path)).toEqual([`/api/models/${REPO}/revision/main`]);
    });

    it('resumes a cut connection with a Range request for the remainder, and retries 503 and 429', async () => {
      await fresh();
      const shard = SHARDS[0]!;
      hub.addFault(shard, { kind: 'cut', afterBytes: 3_000_000 });
      hub.addFault('config.json', { kind: 'status', status: 503 });
      hub.addFault(SHARDS[1]!, { kind: 'status', status: 429, retryAfter: 1 });
      const r = await pull([REPO, '--dtype', 'fp32', '--keep-source']).done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/answered 503; retrying/);
      expect(r.stderr).toMatch(/answered 429; retrying in 1\.0 s/);
      expect(r.stderr).toMatch(/interrupted .* resuming/);

      const [first, second, ...rest] = hub.fileRequests(shard);
      expect(rest).toEqual([]);
      expect(first!.range).toBeUndefined();
      expect(first!.bytesSent).toBe(3_000_000);
      // The client resumes from what reached it: all of the cut response, or (on a loaded machine) a little less
      // when the socket is torn down before the kernel delivered its last buffers. Never from 0.
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(second!.range ?? '')?.[1]);
      expect(resumedAt).toBeGreaterThan(2_000_000);
      expect(resumedAt).toBeLessThanOrEqual(first!.bytesSent);
      expect(second!.status).toBe(206);
      expect(second!.bytesSent).toBe(files[shard]!.length - resumedAt);
      const kept = join(work, 'models', '.sources', 'blip2-tiny', shard);
      expect(sha256(readFileSync(kept))).toBe(sha256(files[shard]!));
      expect(r.stdout).toContain('source kept');
    });

    it('resumes on a rerun from the .incomplete part left by a killed process', async () => {
      await fresh();
      const shard = SHARDS[1]!;
      hub.addFault(shard, { kind: 'stall', afterBytes: 2_000_000, ms: 60_000 });
      const run = pull([REPO, '--dtype', 'fp32']);
      const partial = join(work, 'models', '.sources', 'blip2-tiny', `${shard}.incomplete`);
      const deadline = Date.now() + 60_000;
      while (!(existsSync(partial) && statSync(partial).size === 2_000_000) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      run.child.kill('SIGKILL');
      await run.done;
      expect(statSync(partial).size).toBe(2_000_000);

      const r = await pull([REPO, '--dtype', 'fp32']).done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/resuming model-00002-of-00002\.safetensors from 1\.9 MB/);
      const requests = hub.fileRequests(shard);
      expect(requests).toHaveLength(2);
      expect(requests[1]!.range).toBe('bytes=2000000-');
      expect(requests[1]!.bytesSent).toBe(files[shard]!.length - 2_000_000);
      // Files verified in the first run were not fetched again.
      expect(hub.fileRequests(SHARDS[0]!)).toHaveLength(1);
      expect(hub.fileRequests('config.json')).toHaveLength(1);
    });

    it('removes a file whose bytes fail the sha256 check and says so; a rerun fetches only that file', async () => {
      await fresh();
      const shard = SHARDS[1]!;
      hub.addFault(shard, { kind: 'flip', offset: 12345 });
      const r = await pull([REPO, '--dtype', 'fp32']).done;
      expect(r.code).toBe(1);
      const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('blip2-bot models:'));
      expect(errorLines).toHaveLength(1);
      expect(errorLines[0]).toMatch(
        /model-00002-of-00002\.safetensors of test-org\/blip2-tiny failed its checksum/,
      );
      expect(errorLines[0]).toMatch(/removed/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const source = join(work, 'models', '.sources', 'blip2-tiny');
      expect(readdirSync(source).filter((f) => f.startsWith('model-00002'))).toEqual([]);
      expect(existsSync(join(work, 'models', 'blip2-tiny'))).toBe(false);

      const again = await pull([REPO, '--dtype', 'fp32']).done;
      expect(again.code, again.stderr).toBe(0);
      expect(hub.fileRequests(SHARDS[0]!)).toHaveLength(1);
      expect(hub.fileRequests(shard)).toHaveLength(2);
    });

    it('answers 401, 403, 404 and no network with one clear line each (more answers: pull-cases.test.ts)', async () => {
      await fresh();
      const cases: Array<{ args: string[]; env?: Record<string, string>; line: RegExp }> = [
        {
          args: ['test-org/blip2-tiny-gated'],
          line: /test-org\/blip2-tiny-gated is gated: accept its licence on http:\/\/127\.0\.0\.1:\d+\/test-org\/blip2-tiny-gated, then set HF_TOKEN/,
        },
        {
          args: ['test-org/blip2-tiny-gated'],
          env: { HF_TOKEN: OTHER_TOKEN },
          line: /gated and your HF_TOKEN has not been granted access yet: accept the licence on/,
        },
        {
          args: [REPO, '--revision', 'v9.9'],
          line: /revision "v9\.9" not found in test-org\/blip2-tiny: check --revision/,
        },
      ];
      for (const c of cases) {
        const r = await pull(c.args, c.env).done;
        expect(r.code, r.stderr).toBe(1);
        const lines = r.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('blip2-bot models:'));
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(c.line);
        expect(r.stderr).not.toMatch(/\n\s+at /);
        expect(r.stderr).not.toContain(TOKEN);
        expect(r.stderr).not.toContain(OTHER_TOKEN);
      }
      // Nothing was downloaded by any of them.
      expect(hub.requests.reduce((n, q) => n + q.bytesSent, 0)).toBe(0);

      // A closed port: no Hub there.
      const closed = await emulator();
      const url = closed.hubUrl;
      await closed.stop();
      emulators.pop();
      const r = await pull([REPO], {}, url).done;
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(
        /^blip2-bot models: cannot reach the Hub at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): check your network connection, proxy or HF_ENDPOINT$/,
      );
    });

    it('keeps showing progress (bytes, rate, ETA, file) while the server is slow', async () => {
      await fresh();
      hub.addFault(SHARDS[0]!, { kind: 'stall', afterBytes: 1_000_000, ms: 3500 });
      const run = pull([REPO, '--dtype', 'fp32']);
      const r = await run.done;
      expect(r.code, r.stderr).toBe(0);
      const progress = run.lines.filter((l) => l.text.includes(SHARDS[0]!) && /\/s · /.test(l.text));
      // Lines keep coming while no byte arrives: the same byte count printed at least twice, a second apart.
      const stalled = progress.filter((l) => /\b9\d\d KB of/.test(l.text) || /\b9\d\d KB \//.test(l.text));
      expect(stalled.length, run.lines.map((l) => l.text).join('\n')).toBeGreaterThanOrEqual(2);
      expect(stalled.at(-1)!.at - stalled[0]!.at).toBeGreaterThanOrEqual(900);
      expect(progress[0]!.text).toMatch(/\d+%.* \/ .*\/s · (ETA \d+|stalled)/);
    });
  },
);
