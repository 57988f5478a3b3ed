/**
 * The local copy of a repo's checkpoint files. `.hub-source.json` remembers which files were verified against
 * which oid, so a rerun skips them without rehashing gigabytes, and whether the whole selection for a commit is
 * there (then a rerun goes straight to conversion). Files of another commit whose oid is unchanged are kept.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HubClient } from './client.js';
import { downloadFile, INCOMPLETE_SUFFIX } from './download.js';
import type { RepoFile } from './repo.js';

export const SOURCE_STATE_FILE = '.hub-source.json';

interface SourceState {
  repo: string;
  commit: string;
  /** path → oid it was verified against */
  files: Record<string, string>;
  /** Every file conversion needs is here and verified. */
  complete: boolean;
}

export interface FetchEvents {
  /** `have`: bytes already on disk (a partial file from an earlier run). */
  onFileStart?: (file: RepoFile, have: number) => void;
  onBytes?: (bytes: number) => void;
  onFileDone?: (file: RepoFile, skipped: boolean) => void;
  onRestart?: (file: RepoFile, droppedBytes: number) => void;
}

function oidOf(file: RepoFile): string {
  return file.sha256 ?? file.gitOid;
}

export class SourceDir {
  private constructor(
    readonly dir: string,
    private state: SourceState,
  ) {}

  static async open(dir: string, repo: string, commit: string): Promise<SourceDir> {
    await mkdir(dir, { recursive: true });
    let saved: SourceState | undefined;
    try {
      saved = JSON.parse(await readFile(join(dir, SOURCE_STATE_FILE), 'utf8')) as SourceState;
    } catch {
      saved = undefined;
    }
    const files = saved && saved.repo === repo && typeof saved.files === 'object' ? saved.files : {};
    const complete = saved?.repo === repo && saved.commit === commit && saved.complete === true;
    return new SourceDir(dir, { repo, commit, files, complete });
  }

  get complete(): boolean {
    return this.state.complete;
  }

  path(file: RepoFile): string {
    return join(this.dir, file.path);
  }

  /** Verified earlier against the same oid and still the listed size. */
  async isVerified(file: RepoFile): Promise<boolean> {
    if (this.state.files[file.path] !== oidOf(file)) return false;
    try {
      return (await stat(this.path(file))).size === file.size;
    } catch {
      return false;
    }
  }

  /** Bytes of `file` already here: all of it when verified, else the partial download's size. */
  async bytesPresent(file: RepoFile): Promise<number> {
    if (await this.isVerified(file)) return file.size;
    try {
      return Math.min(file.size, (await stat(`${this.path(file)}${INCOMPLETE_SUFFIX}`)).size);
    } catch {
      return 0;
    }
  }

  /** Removes files (and partial files) that are not in `keep`: an older revision's shards, say. */
  async prune(keep: RepoFile[]): Promise<void> {
    const wanted = new Set(keep.map((f) => f.path));
    for (const entry of await readdir(this.dir)) {
      if (entry === SOURCE_STATE_FILE) continue;
      const name = entry.endsWith(INCOMPLETE_SUFFIX) ? entry.slice(0, -INCOMPLETE_SUFFIX.length) : entry;
      if (!wanted.has(name)) {
        await rm(join(this.dir, entry), { recursive: true, force: true });
        delete this.state.files[name];
      }
    }
    await this.save();
  }

  /** Downloads each file that is not already here and verified; returns the bytes received. */
  async fetch(client: HubClient, files: RepoFile[], events: FetchEvents = {}): Promise<number> {
    let received = 0;
    for (const file of files) {
      if (await this.isVerified(file)) {
        events.onFileDone?.(file, true);
        continue;
      }
      delete this.state.files[file.path];
      await rm(this.path(file), { force: true });
      events.onFileStart?.(file, await this.bytesPresent(file));
      const r = await downloadFile(client, {
        repo: this.state.repo,
        revision: this.state.commit,
        file,
        dest: this.path(file),
        ...(events.onBytes ? { onBytes: events.onBytes } : {}),
        onRestart: (dropped) => events.onRestart?.(file, dropped),
      });
      received += r.bytesTransferred;
      this.state.files[file.path] = oidOf(file);
      await this.save();
      events.onFileDone?.(file, false);
    }
    return received;
  }

  async markComplete(): Promise<void> {
    this.state.complete = true;
    await this.save();
  }

  async remove(): Promise<void> {
    if (existsSync(this.dir)) await rm(this.dir, { recursive: true, force: true });
  }

  private async save(): Promise<void> {
    const path = join(this.dir, SOURCE_STATE_FILE);
    await writeFile(`${path}.tmp`, `${JSON.stringify(this.state, null, 2)}\n`);
    await rename(`${path}.tmp`, path);
  }
}
