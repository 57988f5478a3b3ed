/**
 * `pullModel` in-process against the Hub emulator: the cases that need an injected statfs or a quick loop over
 * answers, plus what the CLI test does not cover (ignored Range, pagination, .bin-only and OPT repos, a new commit,
 * bounded retries).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PullError, type PullOptions, pullModel } from '../../src/cli/commands/models-pull.js';
import { readManifest } from '../../src/convert/convert.js';
import { HubClient } from '../../src/hub/client.js';
import { downloadFile } from '../../src/hub/download.js';
import {
  HubAccessError,
  HubNotFoundError,
  HubResponseError,
  UnsupportedCheckpointError,
} from '../../src/hub/errors.js';
import { listRepoFiles, resolveRevision } from '../../src/hub/repo.js';
import { InsufficientDiskSpaceError } from '../../src/util/disk-space.js';
import { HubEmulator } from '../emulators/hub/server.js';
import { HAS_SHARED, SHARED_DIR, SHARED_SKIP_REASON } from '../helpers/shared.js';
import { NEEDED, NOT_NEEDED, SHARDS, shardedFixtureFiles } from './fixture-repo.js';

const TOKEN = 'hf_emulatedTokenForTests123';
const OTHER = 'hf_emulatedTokenWithoutGatedAccess';
const REPO = 'test-org/blip2-tiny';
const FAST_RETRY = { baseDelayMs: 1, maxDelayMs: 5 };

function capture(): { stream: NodeJS.WriteStream; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => {
    text += d.toString();
  });
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text };
}

describe.skipIf(!HAS_SHARED)(
  `pullModel against the Hub emulator${HAS_SHARED ? '' : ` (${SHARED_SKIP_REASON})`}`,
  () => {
    let files: Record<string, Uint8Array>;
    let hub: HubEmulator;
    let work: string;

    beforeAll(async () => {
      files = await shardedFixtureFiles();
    });
    afterEach(async () => {
      await hub?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    async function start(
      repos: ConstructorParameters<typeof HubEmulator>[0]['repos'] = {},
      pageSize?: number,
    ) {
      work = mkdtempSync(join(tmpdir(), 'blip2-pullc-'));
      hub = await new HubEmulator({
        repos: { [REPO]: { files }, ...repos },
        tokens: [TOKEN, OTHER],
        gatedAccess: [TOKEN],
        ...(pageSize ? { pageSize } : {}),
      }).start();
    }

    function pull(options: Partial<PullOptions> = {}) {
      const err = capture();
      const run = pullModel({
        repo: REPO,
        dtype: 'fp32',
        out: join(work, 'models', 'blip2-tiny'),
        endpoint: hub.hubUrl,
        retry: FAST_RETRY,
        stderr: err.stream,
        ...options,
      });
      return { run, stderr: err.text };
    }

    it('refuses before downloading the weights when the disk is short, with the numbers', async () => {
      await start();
      const statfs = async () => ({ bavail: 1000, bsize: 4096 });
      const err = await pull({ statfs }).run.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InsufficientDiskSpaceError);
      expect((err as Error).message).toMatch(
        /not enough free disk space in .*models: test-org\/blip2-tiny \(1[67] MB to download, about 1[67] MB once converted to fp32\) needs 3\d MB .* only 3\.9 MB is available; free some space/,
      );
      for (const s of SHARDS) expect(hub.bytesServed(s)).toBe(0);
      expect(hub.bytesServed('config.json')).toBeGreaterThan(0);
    });

    it('starts a file over when the server answers a Range request with 200', async () => {
      await start();
      const client = new HubClient({ endpoint: hub.hubUrl, retry: FAST_RETRY });
      const commit = await resolveRevision(client, REPO, 'main');
      const listing = await listRepoFiles(client, REPO, commit);
      const shard = listing.find((f) => f.path === SHARDS[0])!;
      const dest = join(work, shard.path);
      await mkdir(work, { recursive: true });
      // A partial file from an earlier run, with the right first bytes.
      writeFileSync(`${dest}.incomplete`, files[shard.path]!.subarray(0, 1_000_000));
      hub.addFault(shard.path, { kind: 'ignore-range' });
      let dropped = 0;
      const r = await downloadFile(client, {
        repo: REPO,
        revision: commit,
        file: shard,
        dest,
        onRestart: (n) => {
          dropped = n;
        },
      });
      expect(r.resumedFrom).toBe(1_000_000);
      expect(dropped).toBe(1_000_000);
      expect(r.bytesTransferred).toBe(files[shard.path]!.length);
      expect(Buffer.compare(readFileSync(dest), Buffer.from(files[shard.path]!))).toBe(0);
      const [req] = hub.fileRequests(shard.path);
      expect(req).toMatchObject({ range: 'bytes=1000000-', status: 200 });
    });

    it('gives up on a stalled connection after the idle timeout and resumes it with a Range request', async () => {
      await start();
      const client = new HubClient({ endpoint: hub.hubUrl, retry: FAST_RETRY });
      const commit = await resolveRevision(client, REPO, 'main');
      const shard = (await listRepoFiles(client, REPO, commit)).find((f) => f.path === SHARDS[0])!;
      hub.addFault(shard.path, { kind: 'stall', afterBytes: 1_500_000, ms: 10_000 });
      await mkdir(work, { recursive: true });
      const started = Date.now();
      const r = await downloadFile(client, {
        repo: REPO,
        revision: commit,
        file: shard,
        dest: join(work, shard.path),
        idleTimeoutMs: 300,
      });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(r.bytesTransferred).toBe(shard.size);
      const [first, second] = hub.fileRequests(shard.path);
      expect(first!.bytesSent).toBe(1_500_000);
      expect(second).toMatchObject({
        range: 'bytes=1500000-',
        status: 206,
        bytesSent: shard.size - 1_500_000,
      });
    });

    it('lists a paginated tree with sizes and LFS sha256 oids, skipping directories', async () => {
      await start({}, 2);
      const client = new HubClient({ endpoint: hub.hubUrl });
      const listing = await listRepoFiles(client, REPO, hub.commitOf(REPO));
      expect(listing.map((f) => f.path).sort()).toEqual([...NEEDED, ...NOT_NEEDED].sort());
      expect(hub.requests.filter((q) => q.path.includes('/tree/')).length).toBeGreaterThan(5);
      const shard = listing.find((f) => f.path === SHARDS[1])!;
      expect(shard.size).toBe(files[SHARDS[1]!]!.length);
      expect(shard.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(listing.find((f) => f.path === 'config.json')!.sha256).toBeUndefined();
    });

    it('maps the Hub answers to one clear error each', async () => {
      await start({
        'test-org/gated': { files, gated: true },
        'test-org/private': { files, private: true },
      });
      const cases: Array<[Partial<PullOptions>, new (...a: never[]) => Error, RegExp]> = [
        [
          { repo: 'test-org/gated', token: OTHER },
          HubAccessError,
          /gated and your HF_TOKEN has not been granted/,
        ],
        [{ repo: 'test-org/gated' }, HubAccessError, /is gated: accept its licence/],
        [
          { repo: 'test-org/private' },
          HubAccessError,
          /\(401\): it does not exist, or it is private or gated/,
        ],
        [{ token: 'hf_unknown' }, HubAccessError, /refused HF_TOKEN \(invalid credentials\)/],
        [{ repo: 'test-org/none', token: TOKEN }, HubNotFoundError, /model test-org\/none not found/],
        [{ revision: 'nope' }, HubNotFoundError, /revision "nope" not found in test-org\/blip2-tiny/],
        [{ repo: 'not a repo' }, Error, /is not a Hub repo id/],
      ];
      for (const [options, type, message] of cases) {
        const err = await pull(options).run.catch((e: unknown) => e);
        expect(err, String(options.repo)).toBeInstanceOf(type);
        expect((err as Error).message).toMatch(message);
        expect((err as Error).message).not.toContain(TOKEN);
      }
      // The private repo with a token works.
      const ok = await pull({ repo: 'test-org/private', token: TOKEN, out: join(work, 'private') }).run;
      expect(ok.upToDate).toBe(false);
    });

    it('gives up after the bounded retries when the Hub keeps failing', async () => {
      await start();
      hub.addFault('config.json', { kind: 'status', status: 502 }, 10);
      const { run, stderr } = pull();
      const err = await run.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubResponseError);
      expect((err as Error).message).toMatch(
        /answered 502 for config\.json of test-org\/blip2-tiny after 5 tries/,
      );
      expect(hub.requests.filter((q) => q.file === 'config.json')).toHaveLength(5);
      expect(stderr().match(/retrying/g)).toHaveLength(4);
    });

    it('refuses .bin-only repos before downloading weights, and pulls and converts an OPT repo', async () => {
      const { 'model.safetensors.index.json': _i, ...rest } = files;
      const binOnly = Object.fromEntries(Object.entries(rest).filter(([f]) => !SHARDS.includes(f)));
      const opt = Object.fromEntries(
        ['config.json', 'preprocessor_config.json', 'vocab.json', 'merges.txt', 'model.safetensors'].map(
          (f) => [f, readFileSync(join(SHARED_DIR, 'fixtures', 'blip2-opt-tiny', f))],
        ),
      );
      await start({ 'test-org/bin-only': { files: binOnly }, 'test-org/opt': { files: opt } });
      const bin = await pull({ repo: 'test-org/bin-only' }).run.catch((e: unknown) => e);
      expect(bin).toBeInstanceOf(UnsupportedCheckpointError);
      expect((bin as Error).message).toMatch(/has only PyTorch \.bin \(pickle\) weights .* --revision/);
      expect(hub.bytesServed('pytorch_model.bin')).toBe(0);
      const o = await pull({ repo: 'test-org/opt', dtype: 'int4', out: join(work, 'models', 'opt') }).run;
      const manifest = await readManifest(o.outDir);
      expect(manifest?.languageModel).toBe('opt');
      expect(manifest?.tokenizerFiles).toEqual(expect.arrayContaining(['vocab.json', 'merges.txt']));
      expect(hub.bytesServed('model.safetensors')).toBeGreaterThan(0);
    });

    it('follows a new commit, fetching only changed files into a kept source; refuses an out dir of another model', async () => {
      await start();
      const first = await pull({ keepSource: true }).run;
      expect(first.sourceDir).toBeDefined();
      const changed = { ...files, 'tokenizer_config.json': Buffer.from('{"model_max_length": 512}') };
      hub.setRepo(REPO, { files: changed });
      const before = hub.requests.length;
      const second = await pull({ keepSource: true }).run;
      expect(second.commit).not.toBe(first.commit);
      expect(second.upToDate).toBe(false);
      const served = hub.requests.slice(before).filter((q) => q.bytesSent > 0);
      expect(served.map((q) => q.file)).toEqual(['tokenizer_config.json']);
      const manifest = JSON.parse(readFileSync(join(second.outDir, 'manifest.json'), 'utf8'));
      expect(manifest.source.hub.commit).toBe(second.commit);

      // A second repo into the same dir is refused, and a different dtype converts again from the kept source.
      await hub.stop();
      hub = await new HubEmulator({
        repos: { 'other/blip2-tiny': { files }, [REPO]: { files: changed } },
      }).start();
      const err = await pull({ repo: 'other/blip2-tiny' }).run.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PullError);
      expect((err as Error).message).toMatch(/already holds a model converted from test-org\/blip2-tiny/);
      const { run, stderr } = pull({ dtype: 'int8' });
      const third = await run;
      expect(third.bytesDownloaded).toBe(0);
      expect(stderr()).toMatch(/already downloaded; converting it/);
      expect(third.converted!.dtype).toBe('int8');
    });
  },
);
