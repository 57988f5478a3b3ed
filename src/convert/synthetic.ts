/**
 * Seeded random BLIP-2 checkpoints in Hugging Face format: the tiny demo model (fast enough for tests on any
 * clone) and full-size checkpoints for benchmarking the real converter and engine without downloading 15.8 GB.
 *
 * Values follow the initialisation rules of the golden fixture (`fixtures/blip2-tiny/golden.json`
 * "reinit_rules"), which keep activations in a sane range through many layers: norms 1 + 0.1·N, Linear weights
 * N(0, 1/fan_in), biases 0.1·N, embeddings and query tokens N(0, 1), lm_head 4·N(0, 1/d_model) with the `</s>`
 * row tripled so generation can stop. Each tensor draws from its own stream (seed + tensor name), so the bytes
 * depend only on the seed and the config, never on write order or chunking.
 */

import { existsSync } from 'node:fs';
import { copyFile, mkdir, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserFacingError } from '../errors.js';
import { resolveBlip2Config } from '../model/config.js';
import { formatBytes } from '../util/bytes.js';
import { Rng } from '../util/random.js';
import {
  hfTensorLayout,
  layoutParameterCount,
  type TensorSpec,
  tensorElementCount,
} from './checkpoint-layout.js';
import {
  safetensorsFileSize,
  type TensorToWrite,
  type WriteProgress,
  writeSafetensors,
} from './safetensors.js';

export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
] as const;

/** Headroom left free on the disk beyond the files themselves. */
const SPACE_MARGIN_BYTES = 64 * 1024 * 1024;
/** Elements generated per chunk: bounds memory for tensors like a 263 MB lm_head. */
const CHUNK_ELEMENTS = 1 << 22;

export class InsufficientDiskSpaceError extends UserFacingError {
  override name = 'InsufficientDiskSpaceError';
  constructor(
    readonly dir: string,
    readonly neededBytes: number,
    readonly availableBytes: number,
  ) {
    super(
      'disk_space',
      `not enough free disk space in ${dir}: the synthetic checkpoint needs ${formatBytes(neededBytes)} (plus ${formatBytes(SPACE_MARGIN_BYTES)} headroom) but only ${formatBytes(availableBytes)} is available; free some space or choose another --out`,
    );
  }
}

/**
 * A tiny BLIP-2 FlanT5 of the same family as the golden fixture: real FlanT5 vocabulary (32,128) and real 224px
 * preprocessing (patch 14), but a few thousand times smaller than XL. About 9 MB on disk.
 */
export const TINY_DEMO_CONFIG = deepFreeze({
  architectures: ['Blip2ForConditionalGeneration'],
  model_type: 'blip-2',
  num_query_tokens: 8,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  is_encoder_decoder: true,
  tie_word_embeddings: false,
  use_decoder_only_language_model: false,
  torch_dtype: 'float32',
  vision_config: {
    model_type: 'blip_2_vision_model',
    hidden_size: 48,
    intermediate_size: 96,
    num_attention_heads: 4,
    num_hidden_layers: 2,
    image_size: 224,
    patch_size: 14,
  },
  qformer_config: {
    model_type: 'blip_2_qformer',
    encoder_hidden_size: 48,
    hidden_size: 32,
    intermediate_size: 64,
    num_attention_heads: 4,
    num_hidden_layers: 2,
  },
  text_config: {
    model_type: 't5',
    d_ff: 64,
    d_kv: 8,
    d_model: 32,
    decoder_start_token_id: 0,
    dense_act_fn: 'gelu_new',
    eos_token_id: 1,
    feed_forward_proj: 'gated-gelu',
    is_gated_act: true,
    layer_norm_epsilon: 1e-6,
    num_decoder_layers: 2,
    num_heads: 4,
    num_layers: 2,
    pad_token_id: 0,
    relative_attention_max_distance: 128,
    relative_attention_num_buckets: 32,
    tie_word_embeddings: false,
    vocab_size: 32128,
  },
});

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** The `preprocessor_config.json` HF's BlipImageProcessor writes for BLIP-2 (bicubic, CLIP mean/std). */
export function defaultPreprocessorConfig(imageSize = 224): Record<string, unknown> {
  return {
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: 'BlipImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711],
    processor_class: 'Blip2Processor',
    resample: 3,
    rescale_factor: 0.00392156862745098,
    size: { height: imageSize, width: imageSize },
  };
}

/** The FlanT5 tokenizer bundled in the repository (`assets/flan-t5-tokenizer`), from `src/` or `dist/src/`. */
export function bundledTokenizerDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'assets', 'flan-t5-tokenizer');
    if (existsSync(join(candidate, 'tokenizer.json'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error(
    'the bundled FlanT5 tokenizer (assets/flan-t5-tokenizer) is missing from this installation',
  );
}

interface InitContext {
  dModel: number;
  eosTokenId: number;
}

function initScale(spec: TensorSpec, ctx: InitContext): { mean: number; std: number } {
  switch (spec.kind) {
    case 'linear':
      return { mean: 0, std: 1 / Math.sqrt(spec.shape[1]!) };
    case 'patch_conv':
      return { mean: 0, std: 1 / Math.sqrt(spec.shape.slice(1).reduce((a, b) => a * b, 1)) };
    case 'bias':
    case 'norm_bias':
    case 'qkv_bias':
      return { mean: 0, std: 0.1 };
    case 'norm_weight':
      return { mean: 1, std: 0.1 };
    case 'lm_head':
      return { mean: 0, std: 4 / Math.sqrt(ctx.dModel) };
    case 'embedding':
    case 'query_tokens':
    case 'position_embedding':
    case 'class_embedding':
    case 'relative_bias':
      return { mean: 0, std: 1 };
  }
}

/**
 * The synthetic values of one tensor, in chunks of at most `chunkElements`. Two buffers take turns, so a yielded
 * chunk stays valid while the next one is produced (what `writeSafetensors` needs to overlap generation and
 * disk writes) but is overwritten by the one after: consume it before then.
 */
export function* syntheticTensorChunks(
  spec: TensorSpec,
  seed: number,
  ctx: InitContext,
  chunkElements = CHUNK_ELEMENTS,
): Generator<Float32Array> {
  // A tied copy draws from its original's stream, so it holds the same values, as in a real checkpoint.
  const rng = new Rng(seed, spec.aliasOf ?? spec.name);
  const { mean, std } = initScale(spec, ctx);
  const total = tensorElementCount(spec);
  // q | k | v: k has no bias in BLIP-2's ViT, so its third is exactly zero.
  const zeroFrom = spec.kind === 'qkv_bias' ? total / 3 : 0;
  const zeroTo = spec.kind === 'qkv_bias' ? (2 * total) / 3 : 0;
  const d = spec.shape[1] ?? 0;
  const eosFrom = spec.kind === 'lm_head' ? ctx.eosTokenId * d : 0;
  const eosTo = spec.kind === 'lm_head' ? eosFrom + d : 0;
  const size = Math.min(total, chunkElements);
  const buffers = [new Float32Array(size), total > chunkElements ? new Float32Array(size) : undefined];
  let turn = 0;
  for (let start = 0; start < total; start += chunkElements) {
    const n = Math.min(chunkElements, total - start);
    const buffer = buffers[turn++ % 2]!;
    const chunk = n === buffer.length ? buffer : buffer.subarray(0, n);
    rng.fillNormal(chunk, std, mean);
    for (let i = Math.max(zeroFrom, start); i < Math.min(zeroTo, start + n); i++) chunk[i - start] = 0;
    for (let i = Math.max(eosFrom, start); i < Math.min(eosTo, start + n); i++) chunk[i - start]! *= 3;
    yield chunk;
  }
}

/** One synthetic tensor as a whole array (small tensors, tests). */
export function syntheticTensor(spec: TensorSpec, seed: number, ctx: InitContext): Float32Array {
  const out = new Float32Array(tensorElementCount(spec));
  let offset = 0;
  for (const chunk of syntheticTensorChunks(spec, seed, ctx)) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

export interface SyntheticCheckpointOptions {
  /** The raw `config.json` object (as HF writes it); it is validated and written unchanged. */
  config: unknown;
  /** Any safe integer; the same seed and config give the same bytes. */
  seed: number;
  onProgress?: (p: WriteProgress) => void;
  /**
   * Also write the optional tensors real checkpoints may carry and the converter ignores (tied `embed_tokens`
   * copies, the Q-Former text branch), e.g. to test the converter's "ignored N unused tensors" note.
   */
  includeUnused?: boolean;
  /** Written as `preprocessor_config.json` instead of the BLIP-2 defaults. */
  preprocessorConfig?: unknown;
  /** Where to copy tokenizer.json, tokenizer_config.json and special_tokens_map.json from. */
  tokenizerDir?: string;
}

export interface SyntheticCheckpointResult {
  dir: string;
  tensors: number;
  parameters: number;
  /** Size of model.safetensors. */
  bytes: number;
  seconds: number;
}

/**
 * Writes a complete HF-format BLIP-2 checkpoint directory with seeded random float32 weights: `config.json`,
 * `preprocessor_config.json`, the tokenizer files and `model.safetensors` (streamed one chunk at a time, so even
 * XL never sits in memory). Checks free disk space before writing anything.
 */
export async function writeSyntheticCheckpoint(
  outDir: string,
  options: SyntheticCheckpointOptions,
): Promise<SyntheticCheckpointResult> {
  const started = performance.now();
  const { seed } = options;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const config = resolveBlip2Config(options.config);
  const specs = hfTensorLayout(config, { includeOptional: options.includeUnused ?? false });
  const metadata = { format: 'pt', generator: 'blip2-bot synthetic checkpoint', seed: String(seed) };
  const modelBytes = safetensorsFileSize(
    specs.map((s) => ({ name: s.name, dtype: 'F32' as const, shape: s.shape })),
    metadata,
  );

  const tokenizerDir = options.tokenizerDir ?? bundledTokenizerDir();
  let tokenizerBytes = 0;
  for (const f of TOKENIZER_FILES) tokenizerBytes += (await stat(join(tokenizerDir, f))).size;

  await mkdir(outDir, { recursive: true });
  const needed = modelBytes + tokenizerBytes + 1024 * 1024;
  const fsStats = await statfs(outDir);
  const available = Number(fsStats.bavail) * Number(fsStats.bsize);
  if (available < needed + SPACE_MARGIN_BYTES)
    throw new InsufficientDiskSpaceError(outDir, needed, available);

  await writeFile(join(outDir, 'config.json'), `${JSON.stringify(options.config, null, 2)}\n`);
  const preprocessor = options.preprocessorConfig ?? defaultPreprocessorConfig(config.vision.imageSize);
  await writeFile(join(outDir, 'preprocessor_config.json'), `${JSON.stringify(preprocessor, null, 2)}\n`);
  for (const f of TOKENIZER_FILES) await copyFile(join(tokenizerDir, f), join(outDir, f));

  const ctx: InitContext = { dModel: config.text.dModel, eosTokenId: config.text.eosTokenId };
  const tensors: TensorToWrite[] = specs.map((spec) => ({
    name: spec.name,
    dtype: 'F32',
    shape: spec.shape,
    data: () => syntheticTensorChunks(spec, seed, ctx),
  }));
  const bytes = await writeSafetensors(
    join(outDir, 'model.safetensors'),
    tensors,
    metadata,
    options.onProgress ? { onProgress: options.onProgress } : {},
  );
  return {
    dir: outDir,
    tensors: specs.length,
    parameters: layoutParameterCount(specs),
    bytes,
    seconds: (performance.now() - started) / 1000,
  };
}

/** The demo model: `TINY_DEMO_CONFIG` with seeded random weights (~9 MB, well under a second). */
export function writeTinyCheckpoint(
  outDir: string,
  seed = 0,
  options: Omit<SyntheticCheckpointOptions, 'config' | 'seed'> = {},
): Promise<SyntheticCheckpointResult> {
  return writeSyntheticCheckpoint(outDir, { ...options, config: TINY_DEMO_CONFIG, seed });
}
