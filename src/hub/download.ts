/**
 * One file from the Hub, resumable and verified: bytes go to `<dest>.incomplete`; a rerun or a retry after a cut
 * connection continues with `Range: bytes=N-` (a 200 instead of a 206 means the server ignored the range: start
 * that file over); every byte is hashed as it is written (the partial bytes first, on resume) and checked against
 * the Hub's oid (sha256 for LFS files, the git blob sha1 for small ones) before the file takes its real name.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { type HubClient, networkErrorCode } from './client.js';
import {
  ChecksumMismatchError,
  HubAccessError,
  HubNotFoundError,
  HubResponseError,
  HubUnreachableError,
} from './errors.js';
import type { RepoFile } from './repo.js';

export const INCOMPLETE_SUFFIX = '.incomplete';

export interface DownloadFileOptions {
  repo: string;
  /** Commit id (or revision) in the resolve URL. */
  revision: string;
  file: RepoFile;
  dest: string;
  /** Abort and retry a download that receives nothing for this long (default 60 s). */
  idleTimeoutMs?: number;
  /** Bytes already on disk from an earlier run, before the first request. */
  onResume?: (bytes: number) => void;
  onBytes?: (bytes: number) => void;
  /** The server ignored a Range request: the partial bytes were dropped. */
  onRestart?: (droppedBytes: number) => void;
}

export interface DownloadResult {
  /** Bytes received over the network in this call. */
  bytesTransferred: number;
  /** Bytes the first request asked to skip (the partial file from an earlier run). */
  resumedFrom: number;
}

class IdleTimeout extends Error {
  override name = 'IdleTimeout';
  code = 'ETIMEDOUT';
}

class PrematureEnd extends Error {
  override name = 'PrematureEnd';
  code = 'ECONNRESET';
}

/** A hash that ends as the Hub's oid: sha256 of the content (LFS) or git's sha1 of "blob <size>\0" + content. */
function newHasher(file: RepoFile): Hash {
  if (file.sha256) return createHash('sha256');
  return createHash('sha1').update(`blob ${file.size}\0`);
}

async function hashExisting(path: string, hasher: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hasher.update(chunk as Buffer);
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** `bytes 100-199/200` → 100 */
function rangeStart(contentRange: string | null): number | undefined {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(contentRange?.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

function isHubError(e: unknown): boolean {
  return (
    e instanceof HubAccessError ||
    e instanceof HubNotFoundError ||
    e instanceof HubResponseError ||
    e instanceof HubUnreachableError ||
    e instanceof ChecksumMismatchError
  );
}

export async function downloadFile(client: HubClient, options: DownloadFileOptions): Promise<DownloadResult> {
  const { repo, revision, file, dest } = options;
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  const partial = `${dest}${INCOMPLETE_SUFFIX}`;
  const url = client.resolveUrl(repo, revision, file.path);
  const ctx = { repo, revision, file: file.path };

  let offset = (await sizeOf(partial)) ?? 0;
  if (offset > file.size) {
    await rm(partial, { force: true });
    offset = 0;
  }
  let hasher = newHasher(file);
  if (offset > 0) {
    await hashExisting(partial, hasher);
    options.onResume?.(offset);
  }
  const resumedFrom = offset;
  let transferred = 0;
  let failures = 0;
  let host = client.endpoint.host;

  while (offset < file.size) {
    let received = 0;
    try {
      const r = await client.get(url, ctx, offset > 0 ? { range: `bytes=${offset}-` } : {});
      host = r.url.host;
      const { response } = r;
      if (
        offset > 0 &&
        (response.status !== 206 || rangeStart(response.headers.get('content-range')) !== offset)
      ) {
        // The server sent the whole file (or another range): keep nothing of the partial one.
        if (response.status === 206) {
          await response.body?.cancel().catch(() => {});
          throw new HubResponseError(`${host} answered a different byte range than asked for ${file.path}`);
        }
        options.onRestart?.(offset);
        offset = 0;
        hasher = newHasher(file);
      }
      if (!response.body) throw new PrematureEnd('empty body');
      const handle = await open(partial, offset === 0 ? 'w' : 'a');
      let idle: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => r.abort(new IdleTimeout()), idleTimeoutMs);
      };
      try {
        arm();
        for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
          arm();
          if (offset + chunk.length > file.size) {
            throw new ChecksumMismatchError(
              `${file.path} of ${repo} is larger than the ${file.size} bytes the Hub lists; the file was removed, run the command again`,
            );
          }
          await handle.write(chunk);
          hasher.update(chunk);
          offset += chunk.length;
          received += chunk.length;
          transferred += chunk.length;
          options.onBytes?.(chunk.length);
        }
      } finally {
        clearTimeout(idle);
        await handle.close();
      }
      if (offset < file.size) throw new PrematureEnd(`ended at ${offset} of ${file.size} bytes`);
    } catch (e) {
      if (e instanceof ChecksumMismatchError) await rm(partial, { force: true });
      if (isHubError(e)) throw e;
      // A cut connection, a stalled one or a body that ended early: retry from what is on disk.
      failures = received > 0 ? 1 : failures + 1;
      const code = networkErrorCode(e) ?? (e as Error).name;
      if (failures >= client.retry.attempts) {
        throw new HubUnreachableError(
          `downloading ${file.path} from ${host} kept failing (${code}, ${failures} tries without progress): check your network connection and run the command again; it resumes where it stopped`,
        );
      }
      const wait = client.backoffMs(failures);
      client.onRetry(
        `download of ${file.path} from ${host} interrupted (${code}) at ${offset} bytes; resuming in ${(wait / 1000).toFixed(1)} s`,
      );
      await client.sleep(wait);
    }
  }

  const digest = hasher.digest('hex');
  const expected = file.sha256 ?? file.gitOid;
  if (digest !== expected) {
    await rm(partial, { force: true });
    throw new ChecksumMismatchError(
      `${file.path} of ${repo} failed its checksum (${file.sha256 ? 'sha256' : 'git sha1'} ${digest.slice(0, 12)}… instead of the Hub's ${expected.slice(0, 12)}…); the damaged file was removed: run the command again to download it anew`,
    );
  }
  await rename(partial, dest);
  return { bytesTransferred: transferred, resumedFrom };
}
