/**
 * A local stand-in for the Hugging Face Hub on 127.0.0.1, speaking the parts of its HTTP API that `models pull`
 * uses, the way huggingface.co answers them:
 * - `GET /api/models/{repo}/revision/{rev}` → `{ id, sha, siblings, private, gated }`
 * - `GET /api/models/{repo}/tree/{rev}?recursive=true` → `[{ type, path, size, oid, lfs: { oid, size, pointerSize } }]`,
 *   paginated with a `Link: <…>; rel="next"` header
 * - `GET /{repo}/resolve/{rev}/{file}` → small files directly (ETag = git blob sha1), LFS files as a 302 to a signed
 *   CDN URL (`/cdn/{sha256}?…`, on this server or on a second "foreign" server), with `X-Repo-Commit`,
 *   `X-Linked-Etag` and `X-Linked-Size`; Range requests answered with 206 and `Content-Range`
 * - errors with `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and the Hub's statuses:
 *   401 for anonymous access to private or missing repos and gated files, 403 for a token without access to a
 *   gated repo, 404 otherwise, 401 "Invalid credentials in Authorization header" for an unknown token.
 * Every request is recorded (server, path, Range, Authorization, status, bytes sent); faults can be injected per
 * file: a cut connection, a stall, a flipped byte, an ignored Range header, an error status (with Retry-After).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EmulatedRepo {
  files: Record<string, Uint8Array>;
  /** branch or tag → commit; default `{ main: <a commit id derived from the files> }`. */
  refs?: Record<string, string>;
  private?: boolean;
  /** Files need a token that was granted access (`HubEmulatorOptions.gatedAccess`). */
  gated?: boolean;
}

export interface HubEmulatorOptions {
  repos: Record<string, EmulatedRepo>;
  /** Tokens the Hub knows; any other Bearer token gets 401 "Invalid credentials". */
  tokens?: string[];
  /** Tokens whose account accepted the gated repos' licences. */
  gatedAccess?: string[];
  /** Redirect LFS downloads to a second server on another port (a foreign host: it must never see the token). */
  foreignCdn?: boolean;
  /** Tree entries per page (default 4, so listings are paginated). */
  pageSize?: number;
}

export type Fault =
  | { kind: 'cut'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number; ms: number }
  | { kind: 'flip'; offset: number }
  | { kind: 'ignore-range' }
  | { kind: 'status'; status: number; retryAfter?: number };

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  /** The file it served, for resolve and CDN requests. */
  file?: string;
  range?: string;
  authorization?: string;
  status: number;
  bytesSent: number;
}

/** LFS in the Hub's default .gitattributes sense: weights and sentencepiece models. */
const LFS = /\.(safetensors|bin|model|onnx)$/;

interface Blob {
  path: string;
  data: Uint8Array;
  gitOid: string;
  sha256?: string;
  pointerSize?: number;
}

function sha1(data: Uint8Array | string): string {
  return createHash('sha1').update(data).digest('hex');
}

function blobOf(path: string, data: Uint8Array): Blob {
  const gitBlobSha = (bytes: Uint8Array) =>
    sha1(Buffer.concat([Buffer.from(`blob ${bytes.length}\0`), Buffer.from(bytes)]));
  if (!LFS.test(path)) return { path, data, gitOid: gitBlobSha(data) };
  const sha256 = createHash('sha256').update(data).digest('hex');
  const pointer = Buffer.from(
    `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${data.length}\n`,
  );
  return { path, data, gitOid: gitBlobSha(pointer), sha256, pointerSize: pointer.length };
}

interface RepoState {
  id: string;
  repo: EmulatedRepo;
  blobs: Map<string, Blob>;
  refs: Record<string, string>;
  commit: string;
}

export class HubEmulator {
  readonly requests: RecordedRequest[] = [];
  private readonly repos = new Map<string, RepoState>();
  private readonly bySha = new Map<string, Blob>();
  private readonly faults = new Map<string, Array<Fault & { times: number }>>();
  private hub: Server | undefined;
  private cdn: Server | undefined;
  hubUrl = '';
  cdnUrl = '';

  constructor(private readonly options: HubEmulatorOptions) {
    for (const [id, repo] of Object.entries(options.repos)) this.setRepo(id, repo);
  }

  /** Adds or replaces a repo (e.g. a new commit on main). */
  setRepo(id: string, repo: EmulatedRepo): void {
    const blobs = new Map(Object.entries(repo.files).map(([p, d]) => [p, blobOf(p, d)]));
    for (const b of blobs.values()) if (b.sha256) this.bySha.set(b.sha256, b);
    const commit = sha1([...blobs.values()].map((b) => `${b.path}:${b.gitOid}`).join('\n'));
    this.repos.set(id, { id, repo, blobs, refs: repo.refs ?? { main: commit }, commit });
  }

  commitOf(id: string): string {
    return this.repos.get(id)!.commit;
  }

  /** Applies `fault` to the next `times` requests that serve `file` (default once). */
  addFault(file: string, fault: Fault, times = 1): void {
    const list = this.faults.get(file) ?? [];
    list.push({ ...fault, times });
    this.faults.set(file, list);
  }

  /** Bytes of file bodies sent for `file` (all requests, or those matching `filter`). */
  bytesServed(file?: string): number {
    return this.requests
      .filter((r) => file === undefined || r.file === file)
      .reduce((n, r) => n + r.bytesSent, 0);
  }

  fileRequests(file: string): RecordedRequest[] {
    return this.requests.filter((r) => r.file === file && r.bytesSent > 0);
  }

  async start(): Promise<this> {
    this.hub = await listen((req, res) => this.handleHub(req, res));
    this.hubUrl = `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
    if (this.options.foreignCdn) {
      this.cdn = await listen((req, res) => this.handleCdn(req, res, 'cdn'));
      this.cdnUrl = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
    } else {
      this.cdnUrl = this.hubUrl;
    }
    return this;
  }

  async stop(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      if (!s) continue;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  private takeFault(file: string, kinds: Fault['kind'][]): Fault | undefined {
    const list = this.faults.get(file);
    const i = list?.findIndex((f) => kinds.includes(f.kind) && f.times > 0) ?? -1;
    if (!list || i < 0) return undefined;
    list[i]!.times--;
    return list[i];
  }

  private record(
    req: IncomingMessage,
    server: 'hub' | 'cdn',
    extra: Partial<RecordedRequest>,
  ): RecordedRequest {
    const r: RecordedRequest = {
      server,
      method: req.method ?? 'GET',
      path: req.url ?? '',
      status: 0,
      bytesSent: 0,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      ...extra,
    };
    this.requests.push(r);
    return r;
  }

  private handleHub(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://hub');
    const path = decodeURIComponent(url.pathname);
    if (path.startsWith('/cdn/')) return void this.handleCdn(req, res, 'hub');
    const rec = this.record(req, 'hub', {});
    const fail = (status: number, code?: string, message?: string) => {
      rec.status = status;
      res.writeHead(status, {
        'content-type': 'application/json',
        ...(code ? { 'x-error-code': code } : {}),
        ...(message ? { 'x-error-message': message } : {}),
      });
      res.end(JSON.stringify({ error: message ?? code ?? 'error' }));
    };

    // Authorization: an unknown token is refused everywhere, as the Hub does.
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
    if (auth && !(this.options.tokens ?? []).includes(token ?? ''))
      return fail(401, undefined, 'Invalid credentials in Authorization header');

    const api = /^\/api\/models\/(.+?)\/(revision|tree)\/([^/]+)$/.exec(path);
    const resolve = api ? undefined : /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const id = api?.[1] ?? resolve?.[1];
    const state = id ? this.repos.get(id) : undefined;
    if (!id || !state || (state.repo.private && !token)) {
      return token
        ? fail(404, 'RepoNotFound', 'Repository not found')
        : fail(401, 'RepoNotFound', 'Repository not found');
    }
    const rev = (api?.[3] ?? resolve?.[2])!;
    const commit = state.refs[rev] ?? (rev === state.commit ? rev : undefined);
    if (!commit || commit !== state.commit) return fail(404, 'RevisionNotFound', 'Invalid rev id');

    if (api?.[2] === 'revision') {
      rec.status = 200;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          sha: commit,
          private: state.repo.private ?? false,
          gated: state.repo.gated ? 'manual' : false,
          siblings: [...state.blobs.keys()].map((rfilename) => ({ rfilename })),
        }),
      );
      return;
    }
    if (api?.[2] === 'tree') return this.tree(state, url, res, rec);

    const file = resolve![3]!;
    rec.file = file;
    if (state.repo.gated) {
      if (!token) return fail(401, 'GatedRepo', 'Access to model is restricted');
      if (!(this.options.gatedAccess ?? []).includes(token))
        return fail(403, 'GatedRepo', 'Access to model is restricted and you are not in the authorized list');
    }
    const blob = state.blobs.get(file);
    if (!blob) return fail(404, 'EntryNotFound', 'Entry not found');
    const status = this.takeFault(file, ['status']) as Extract<Fault, { kind: 'status' }> | undefined;
    if (status) {
      rec.status = status.status;
      res.writeHead(
        status.status,
        status.retryAfter !== undefined ? { 'retry-after': String(status.retryAfter) } : {},
      );
      res.end('busy');
      return;
    }
    const common = { 'x-repo-commit': commit, 'accept-ranges': 'bytes' };
    if (blob.sha256) {
      rec.status = 302;
      res.writeHead(302, {
        ...common,
        location: `${this.cdnUrl}/cdn/${blob.sha256}?X-Amz-Signature=emulated&expires=3600`,
        etag: `"${blob.sha256}"`,
        'x-linked-etag': `"${blob.sha256}"`,
        'x-linked-size': String(blob.data.length),
      });
      res.end();
      return;
    }
    void this.sendBytes(req, res, rec, blob, { ...common, etag: `"${blob.gitOid}"` });
  }

  private tree(state: RepoState, url: URL, res: ServerResponse, rec: RecordedRequest): void {
    const recursive = url.searchParams.get('recursive') === 'true';
    const entries: unknown[] = [];
    const dirs = new Set<string>();
    for (const b of state.blobs.values()) {
      const parts = b.path.split('/');
      if (parts.length > 1) {
        dirs.add(parts[0]!);
        if (!recursive) continue;
      }
      entries.push({
        type: 'file',
        oid: b.gitOid,
        size: b.data.length,
        path: b.path,
        ...(b.sha256 ? { lfs: { oid: b.sha256, size: b.data.length, pointerSize: b.pointerSize } } : {}),
      });
    }
    for (const d of dirs) entries.push({ type: 'directory', oid: sha1(d), size: 0, path: d });
    const pageSize = this.options.pageSize ?? 4;
    const cursor = Number(url.searchParams.get('cursor') ?? 0);
    const page = entries.slice(cursor, cursor + pageSize);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (cursor + pageSize < entries.length) {
      const next = new URL(url.href.replace('http://hub', this.hubUrl));
      next.searchParams.set('cursor', String(cursor + pageSize));
      headers.link = `<${next.href}>; rel="next"`;
    }
    rec.status = 200;
    res.writeHead(200, headers);
    res.end(JSON.stringify(page));
  }

  private handleCdn(req: IncomingMessage, res: ServerResponse, server: 'hub' | 'cdn') {
    const url = new URL(req.url ?? '/', 'http://cdn');
    const blob = this.bySha.get(url.pathname.slice('/cdn/'.length));
    const rec = this.record(req, server, blob ? { file: blob.path } : {});
    if (!blob || url.searchParams.get('X-Amz-Signature') !== 'emulated') {
      rec.status = 403;
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('AccessDenied');
      return;
    }
    void this.sendBytes(req, res, rec, blob, { etag: `"${blob.sha256}"`, 'accept-ranges': 'bytes' });
  }

  private async sendBytes(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RecordedRequest,
    blob: Blob,
    headers: Record<string, string>,
  ): Promise<void> {
    let data = blob.data;
    const flip = this.takeFault(blob.path, ['flip']) as Extract<Fault, { kind: 'flip' }> | undefined;
    if (flip) {
      data = Uint8Array.from(data);
      data[flip.offset] = data[flip.offset]! ^ 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    if (range && !this.takeFault(blob.path, ['ignore-range'])) {
      start = Number(range[1]);
      if (start >= data.length) {
        rec.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        res.end();
        return;
      }
      rec.status = 206;
      res.writeHead(206, {
        ...headers,
        'content-length': String(data.length - start),
        'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
      });
    } else {
      rec.status = 200;
      res.writeHead(200, { ...headers, 'content-length': String(data.length) });
    }
    const fault = this.takeFault(blob.path, ['cut', 'stall']) as
      | Extract<Fault, { kind: 'cut' } | { kind: 'stall' }>
      | undefined;
    const CHUNK = 64 * 1024;
    let pos = start;
    let faulted = false;
    while (pos < data.length) {
      let end = Math.min(data.length, pos + CHUNK);
      const at = fault && !faulted ? start + fault.afterBytes : Number.POSITIVE_INFINITY;
      if (end > at && pos <= at) end = at;
      if (end > pos) {
        const chunk = data.subarray(pos, end);
        const ok = await new Promise<boolean>((r) => res.write(chunk, (err) => r(!err)));
        if (!ok || res.destroyed) return;
        rec.bytesSent += chunk.length;
        pos = end;
      }
      if (fault && !faulted && pos === at) {
        faulted = true;
        if (fault.kind === 'cut') {
          res.socket?.destroy();
          return;
        }
        await new Promise((r) => setTimeout(r, fault.ms));
        if (res.destroyed) return;
      }
    }
    res.end();
  }
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
