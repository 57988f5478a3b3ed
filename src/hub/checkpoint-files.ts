/**
 * Which files of a Hugging Face checkpoint repo conversion reads: the configs, the tokenizer files and the
 * safetensors weights (the shard index and exactly the shards it names, or one `model.safetensors`). Repos also
 * carry pickled `.bin` copies, ONNX or Flax exports and READMEs; those are never downloaded.
 */
import { UnsupportedCheckpointError } from './errors.js';
import type { RepoFile } from './repo.js';

/** Small files fetched when present (tokenizer files of T5 and, for OPT checkpoints, vocab.json and merges.txt). */
export const METADATA_FILES = [
  'config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'spiece.model',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
] as const;

/** The largest tokenizer.json files (250k-token vocabularies) are ~20 MB; these files are read whole. */
const MAX_METADATA_BYTES = 100 * 1024 * 1024;

export const SHARD_INDEX = 'model.safetensors.index.json';
export const SINGLE_WEIGHTS = 'model.safetensors';

export interface CheckpointPlan {
  /** Small files, the shard index included when there is one: fetched first. */
  metadata: RepoFile[];
  /** The shard index, when the weights are sharded: its weight_map names the shards. */
  index?: RepoFile;
  /** The weights, when not sharded (else read the index, then call `shardsFromIndex`). */
  weights?: RepoFile;
}

export function planCheckpoint(repo: string, files: RepoFile[]): CheckpointPlan {
  const byPath = new Map(files.map((f) => [f.path, f]));
  if (!byPath.has('config.json'))
    throw new UnsupportedCheckpointError(
      `${repo} has no config.json at its root: it is not a Hugging Face transformers checkpoint`,
    );
  const index = byPath.get(SHARD_INDEX);
  const metadata = [...METADATA_FILES.flatMap((name) => byPath.get(name) ?? []), ...(index ? [index] : [])];
  const huge = metadata.find((f) => f.size > MAX_METADATA_BYTES);
  if (huge)
    throw new UnsupportedCheckpointError(
      `${huge.path} of ${repo} is ${huge.size} bytes, far more than a config or tokenizer file should be`,
    );
  if (index) return { metadata, index };
  const weights = byPath.get(SINGLE_WEIGHTS);
  if (weights) return { metadata, weights };
  const pickled = files.some((f) => /(^|\/)pytorch_model.*\.bin$/.test(f.path));
  throw new UnsupportedCheckpointError(
    pickled
      ? `${repo} has only PyTorch .bin (pickle) weights at this revision; blip2-bot reads safetensors only (loading a pickle can run code). Look for a revision with model.safetensors (the Hub's safetensors conversion opens a pull request, refs/pr/N) and pass it with --revision`
      : `${repo} has no model.safetensors or ${SHARD_INDEX} at its root: nothing blip2-bot can convert`,
  );
}

/** The shards a `model.safetensors.index.json` names, each once, checked against the listing. */
export function shardsFromIndex(repo: string, indexText: string, files: RepoFile[]): RepoFile[] {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(indexText) as { weight_map?: unknown }).weight_map;
  } catch {
    throw new UnsupportedCheckpointError(`${SHARD_INDEX} of ${repo} is not valid JSON`);
  }
  if (!weightMap || typeof weightMap !== 'object')
    throw new UnsupportedCheckpointError(`${SHARD_INDEX} of ${repo} has no weight_map`);
  const names = [...new Set(Object.values(weightMap as Record<string, unknown>))];
  const byPath = new Map(files.map((f) => [f.path, f]));
  const shards: RepoFile[] = [];
  for (const name of names) {
    // Shard names are plain file names beside the index; anything else (paths, `..`) is refused.
    if (typeof name !== 'string' || !/^[A-Za-z0-9._-]+\.safetensors$/.test(name))
      throw new UnsupportedCheckpointError(
        `${SHARD_INDEX} of ${repo} names an unexpected shard "${String(name)}"`,
      );
    const file = byPath.get(name);
    if (!file)
      throw new UnsupportedCheckpointError(
        `${SHARD_INDEX} of ${repo} names ${name}, which the repo does not have`,
      );
    shards.push(file);
  }
  if (shards.length === 0) throw new UnsupportedCheckpointError(`${SHARD_INDEX} of ${repo} names no shards`);
  return shards.sort((a, b) => a.path.localeCompare(b.path));
}
