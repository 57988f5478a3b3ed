/**
 * `blip2-bot models pull <repo-id>`: fetch a BLIP-2 checkpoint from the Hugging Face Hub (only the files conversion
 * reads, resumable and verified) and convert it into a model dir, with no Python and no git-lfs.
 *
 * Layout: the model goes to `--out` (default `models/<name>`); the downloaded checkpoint to the sibling
 * `<out's parent>/.sources/<name>`, named like the model so the model id (which starts with the source dir's name)
 * reads `<name>-<dtype>-…`. The source is removed after a successful conversion unless `--keep-source`.
 *
 * Idempotent: a model dir whose manifest records the same repo, commit and dtype means there is nothing to do;
 * a complete source with no finished model (an interrupted conversion) is converted again without downloading.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { type ConvertModelSummary, convertModel, type ModelDtype } from '../../calibrate/convert-model.js';
import { UserFacingError } from '../../errors.js';
import { planCheckpoint, SHARD_INDEX, shardsFromIndex } from '../../hub/checkpoint-files.js';
import { HubClient, type RetryPolicy } from '../../hub/client.js';
import { isValidRepoId, listRepoFiles, type RepoFile, resolveRevision } from '../../hub/repo.js';
import { SourceDir } from '../../hub/source-dir.js';
import { ConfigError, resolveBlip2Config } from '../../model/config.js';
import { WEIGHT_DTYPES } from '../../model/graph-io.js';
import { readManifest } from '../../model/manifest.js';
import { formatBytes } from '../../util/bytes.js';
import { ensureFreeSpace, type StatfsReader } from '../../util/disk-space.js';
import { parseWithPositionals, UsageError } from '../args.js';
import { ProgressBar, TransferProgress } from '../progress.js';

export const PULL_USAGE = `Usage: blip2-bot models pull <repo-id> [--revision main] [--dtype auto|fp32|int8|int4|mixed]
                          [--out models/<name>] [--keep-source]

Downloads a BLIP-2 FlanT5 checkpoint from the Hugging Face Hub and converts it; no Python, no git-lfs.
  <repo-id>       the model repo, e.g. Salesforce/blip2-flan-t5-xl
  --revision      branch, tag or commit id (default main)
  --dtype         weight format (default auto); see blip2-bot convert --help
  --out           model dir (default models/<name>, where <name> is the repo id's last part)
  --keep-source   keep the downloaded checkpoint in <out's parent>/.sources/<name> after converting

Only what conversion reads is downloaded: config, preprocessor and tokenizer files, and the safetensors weights
(pickled .bin weights are refused). Free disk space is checked first; an interrupted download resumes where it
stopped; every file is checked against the Hub's sha256. Running it again with a finished model does nothing.
Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (for private and gated models).`;

export const PULL_DTYPES: readonly ModelDtype[] = ['auto', ...WEIGHT_DTYPES];

/**
 * Converted size per source byte (fp32 safetensors), from the full-size conversions in docs/benchmarks.md
 * (15.8 GB → mixed 3.1, int8 4.3, int4 2.5 GB). `auto` writes an fp32 reference while it calibrates, so it is
 * budgeted at the fp32 size plus an int8-sized result.
 */
const CONVERTED_SIZE_RATIO: Record<ModelDtype, number> = {
  fp32: 1.0,
  int8: 0.28,
  int4: 0.17,
  mixed: 0.2,
  auto: 1.28,
};

export class PullError extends UserFacingError {
  override name = 'PullError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('pull', message, options);
  }
}

export interface PullOptions {
  repo: string;
  revision?: string;
  dtype?: ModelDtype;
  out?: string;
  keepSource?: boolean;
  /** Like HF_ENDPOINT / HF_TOKEN. */
  endpoint?: string;
  token?: string;
  statfs?: StatfsReader;
  retry?: Partial<RetryPolicy>;
  /** Progress and notes (default stderr). */
  stderr?: NodeJS.WriteStream;
  progressIntervalMs?: number;
}

export interface PullResult {
  outDir: string;
  commit: string;
  /** The model dir already held this repo, commit and dtype: nothing was downloaded or converted. */
  upToDate: boolean;
  bytesDownloaded: number;
  converted?: ConvertModelSummary;
  /** The source dir, when kept. */
  sourceDir?: string;
}

async function isNonEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length > 0;
  } catch {
    return false;
  }
}

async function sizeOfWeights(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir)) {
    if (entry.endsWith('.safetensors')) total += (await stat(join(dir, entry))).size;
  }
  return total;
}

function sum(files: RepoFile[]): number {
  return files.reduce((n, f) => n + f.size, 0);
}

/** Downloads and converts; see the module comment. */
export async function pullModel(options: PullOptions): Promise<PullResult> {
  const { repo } = options;
  const revision = options.revision ?? 'main';
  const dtype = options.dtype ?? 'auto';
  const stderr = options.stderr ?? process.stderr;
  const say = (line: string) => stderr.write(`${line}\n`);
  if (!isValidRepoId(repo))
    throw new UsageError(`"${repo}" is not a Hub repo id; use owner/name, e.g. Salesforce/blip2-flan-t5-xl`);
  if (!PULL_DTYPES.includes(dtype))
    throw new UsageError(`--dtype must be one of ${PULL_DTYPES.join(', ')}, got "${dtype}"`);
  const name = repo.split('/').pop()!;
  const outDir = resolve(options.out ?? join('models', name));
  const shown = relative(process.cwd(), outDir) || outDir;
  const sourcePath = join(dirname(outDir), '.sources', basename(outDir));

  let progress: TransferProgress | undefined;
  const client = new HubClient({
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
    onRetry: (notice) => (progress ? progress.note(notice) : say(notice)),
  });

  const commit = await resolveRevision(client, repo, revision);
  const existing = await readManifest(outDir);
  if (existing) {
    const hub = existing.source.hub;
    if (hub?.repo === repo && hub.commit === commit && hub.dtype === dtype) {
      say(
        `${shown} already holds ${repo} at ${revision} (commit ${commit.slice(0, 12)}) as ${dtype}: nothing to download`,
      );
      return { outDir, commit, upToDate: true, bytesDownloaded: 0 };
    }
    if (hub?.repo !== repo)
      throw new PullError(
        `${shown} already holds a model converted from ${hub?.repo ?? existing.source.dir}; choose another --out or remove that dir first`,
      );
  } else if (await isNonEmptyDir(outDir)) {
    throw new PullError(`${shown} exists and is not a converted model; choose another --out`);
  }

  const source = await SourceDir.open(sourcePath, repo, commit);
  let bytesDownloaded = 0;
  const fetchWithProgress = async (files: RepoFile[]) => {
    let total = 0;
    for (const f of files) total += f.size;
    const p = new TransferProgress({
      totalBytes: total,
      stream: stderr,
      ...(options.progressIntervalMs ? { intervalMs: options.progressIntervalMs } : {}),
    });
    progress = p;
    try {
      bytesDownloaded += await source.fetch(client, files, {
        onFileStart: (f, have) => {
          p.startFile(f.path, f.size, have);
          if (have > 0) p.note(`resuming ${f.path} from ${formatBytes(have)} of ${formatBytes(f.size)}`);
        },
        onBytes: (n) => p.add(n),
        onFileDone: (f, skipped) => (skipped ? p.skipFile(f.size) : p.endFile()),
        onRestart: (f, dropped) => {
          p.restartFile(dropped);
          p.note(`the server ignored the resume request for ${f.path}; downloading it from the start`);
        },
      });
    } finally {
      p.stop();
      progress = undefined;
    }
  };

  if (source.complete) {
    say(`The checkpoint of ${repo} (commit ${commit.slice(0, 12)}) is already downloaded; converting it`);
    const weights = await sizeOfWeights(sourcePath);
    await ensureFreeSpace(dirname(outDir), weights * CONVERTED_SIZE_RATIO[dtype], {
      what: `converting ${repo} to ${dtype}`,
      hint: 'free some space or choose another --out',
      ...(options.statfs ? { statfs: options.statfs } : {}),
    });
  } else {
    say(`Fetching ${repo} at ${revision} (commit ${commit.slice(0, 12)}) from ${client.base}`);
    const files = await listRepoFiles(client, repo, commit);
    const plan = planCheckpoint(repo, files);
    await fetchWithProgress(plan.metadata);
    await checkConvertible(repo, sourcePath);
    const weights = plan.index
      ? shardsFromIndex(repo, await readFile(join(sourcePath, SHARD_INDEX), 'utf8'), files)
      : [plan.weights!];
    await source.prune([...plan.metadata, ...weights]);
    let present = 0;
    for (const f of weights) present += await source.bytesPresent(f);
    const toDownload = sum(weights) - present;
    const converted = sum(weights) * CONVERTED_SIZE_RATIO[dtype];
    await ensureFreeSpace(dirname(outDir), toDownload + converted, {
      what: `${repo} (${formatBytes(toDownload)} to download, about ${formatBytes(converted)} once converted to ${dtype})`,
      hint: 'free some space or choose another --out',
      ...(options.statfs ? { statfs: options.statfs } : {}),
    });
    await fetchWithProgress(weights);
    await source.markComplete();
    say(`Downloaded ${formatBytes(bytesDownloaded)}; converting to ${dtype}`);
  }

  const bar = new ProgressBar(stderr);
  const converted = await convertModel(sourcePath, outDir, {
    dtype,
    force: existing !== undefined,
    hub: { repo, revision, commit, dtype },
    onProgress: ({ graph, tensorsRead, tensorsTotal }) =>
      bar.update(tensorsRead / tensorsTotal, `${graph} (${tensorsRead}/${tensorsTotal} tensors)`),
    log: (line) => {
      bar.done();
      say(line);
    },
  });
  bar.done();
  if (options.keepSource)
    return { outDir, commit, upToDate: false, bytesDownloaded, converted, sourceDir: sourcePath };
  await source.remove();
  // Leave no empty `.sources` behind.
  const sources = dirname(sourcePath);
  if (existsSync(sources) && !(await isNonEmptyDir(sources)))
    await rm(sources, { recursive: true, force: true });
  return { outDir, commit, upToDate: false, bytesDownloaded, converted };
}

/** Refuses before the big download what the converter would refuse after it (another model, no tokenizer). */
async function checkConvertible(repo: string, dir: string): Promise<void> {
  let kind: string;
  try {
    kind = resolveBlip2Config(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))).languageModel;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof SyntaxError)
      throw new PullError(`${repo} is not a checkpoint blip2-bot can convert: ${(e as Error).message}`);
    throw e;
  }
  const bpe = existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'));
  if (!existsSync(join(dir, 'tokenizer.json')) && !(kind === 'opt' && bpe)) {
    throw new PullError(
      kind === 'opt'
        ? `${repo} has neither tokenizer.json nor vocab.json and merges.txt (the OPT tokenizer files the bot needs)`
        : `${repo} has no tokenizer.json (the Hugging Face fast tokenizer file the bot needs)`,
    );
  }
}

export async function modelsPullCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseWithPositionals(
    argv,
    {
      revision: { type: 'string' },
      dtype: { type: 'string' },
      out: { type: 'string' },
      'keep-source': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    PULL_USAGE,
  );
  if (v.help) {
    console.log(PULL_USAGE);
    return 0;
  }
  if (positionals.length !== 1)
    throw new UsageError(
      `${positionals.length === 0 ? 'missing <repo-id>' : `one <repo-id> expected, got ${positionals.length}`}\n\n${PULL_USAGE}`,
    );
  const endpoint = process.env.HF_ENDPOINT;
  const token = process.env.HF_TOKEN;
  const r = await pullModel({
    repo: positionals[0]!,
    ...(v.revision !== undefined ? { revision: v.revision } : {}),
    ...(v.dtype !== undefined ? { dtype: v.dtype as ModelDtype } : {}),
    ...(v.out !== undefined ? { out: v.out } : {}),
    keepSource: v['keep-source'] ?? false,
    ...(endpoint ? { endpoint } : {}),
    ...(token ? { token } : {}),
  });
  if (r.upToDate) return 0;
  const s = r.converted!;
  console.log(
    [
      `Pulled ${positionals[0]} (commit ${r.commit.slice(0, 12)}) → ${s.outDir} (${s.dtype})`,
      `  downloaded  ${formatBytes(r.bytesDownloaded)}`,
      `  parameters  ${s.parameters.toLocaleString('en-US')}`,
      `  written     ${formatBytes(s.bytesWritten)}`,
      `  model id    ${s.modelId}`,
      r.sourceDir ? `  source kept ${r.sourceDir}` : '  source      removed (pass --keep-source to keep it)',
      ...s.report,
    ].join('\n'),
  );
  return 0;
}
