/**
 * What a model repo holds at a revision: the commit the revision points at (`/api/models/{repo}/revision/{rev}`)
 * and the file listing with sizes, git oids and LFS sha256 oids (`/api/models/{repo}/tree/{commit}?recursive=true`,
 * paginated with `Link` headers, which @huggingface/hub's `listFiles` follows).
 */
import { type ListFileEntry, listFiles } from '@huggingface/hub';
import type { HubClient } from './client.js';
import { HubResponseError } from './errors.js';

export interface RepoFile {
  path: string;
  size: number;
  /** Git blob sha1 of the file (non-LFS files) or of its LFS pointer. */
  gitOid: string;
  /** sha256 of the content, for LFS files (what the Hub shows as "SHA256"). */
  sha256?: string;
}

/** Owner/name as the Hub spells repo ids (a few legacy models have no owner, e.g. "t5-small"). */
const REPO_ID = /^(?:[A-Za-z0-9][A-Za-z0-9._-]*\/)?[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function isValidRepoId(repo: string): boolean {
  return REPO_ID.test(repo) && !repo.includes('..') && !repo.includes('--') && repo.length <= 96;
}

/** Model info is a few hundred kB for big repos; anything far larger is not the Hub. */
const MAX_INFO_BYTES = 32 * 1024 * 1024;

/** Parses a JSON body of at most `maxBytes`; undefined when it is not JSON or too large. */
async function readJson(response: Response, maxBytes: number): Promise<unknown> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of (response.body ?? []) as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > maxBytes) {
      await response.body?.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The commit id a branch, tag or commit id points at. */
export async function resolveRevision(client: HubClient, repo: string, revision: string): Promise<string> {
  const ctx = { repo, revision };
  const url = client.url(`api/models/${repo}/revision/${encodeURIComponent(revision)}`);
  const { response } = await client.get(url, ctx, { accept: 'application/json' });
  const info = (await readJson(response, MAX_INFO_BYTES)) as { sha?: unknown } | undefined;
  if (typeof info?.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha))
    throw new HubResponseError(`the Hub's answer for ${repo}@${revision} has no commit id`);
  return info.sha;
}

/** Every file of the repo at `commit`, with the oids downloads are verified against. */
export async function listRepoFiles(client: HubClient, repo: string, commit: string): Promise<RepoFile[]> {
  const files: RepoFile[] = [];
  const entries = listFiles({
    repo: { type: 'model', name: repo },
    revision: commit,
    recursive: true,
    hubUrl: client.base,
    fetch: client.fetchFor({ repo, revision: commit }),
  });
  try {
    for await (const entry of entries) collect(entry);
  } catch (e) {
    // A page that is not JSON (a proxy's error page, say) rather than an answer of the Hub's.
    if (e instanceof SyntaxError)
      throw new HubResponseError(`the Hub's file listing of ${repo} is not JSON (is HF_ENDPOINT right?)`);
    throw e;
  }
  return files;

  function collect(entry: ListFileEntry): void {
    if (!entry || typeof entry !== 'object')
      throw new HubResponseError(`the Hub's file listing of ${repo} has a malformed entry`);
    if (entry.type !== 'file') return;
    if (typeof entry.path !== 'string' || !Number.isSafeInteger(entry.size) || typeof entry.oid !== 'string')
      throw new HubResponseError(`the Hub's file listing of ${repo} has a malformed entry`);
    files.push({
      path: entry.path,
      size: entry.lfs?.size ?? entry.size,
      gitOid: entry.oid,
      ...(entry.lfs?.oid ? { sha256: entry.lfs.oid } : {}),
    });
  }
}
