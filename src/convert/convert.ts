/**
 * `convertCheckpoint`: HF BLIP-2 checkpoint dir → model dir of ONNX graphs, external weights, tokenizer files and
 * a manifest. Everything is written into a sibling `.partial-*` dir that is renamed into place only when complete,
 * so an interrupted run never leaves a model that looks finished.
 */

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { UserFacingError } from '../errors.js';
import { type Blip2Config, ConfigError, resolveBlip2Config } from '../model/config.js';
import {
  DTYPE_FORMATS,
  GRAPH_FILES,
  type GraphName,
  MANIFEST_FILE,
  MODEL_FORMAT,
  MODEL_FORMAT_VERSION,
  type ModelManifest,
  WEIGHT_DTYPES,
  type WeightDtype,
} from '../model/graph-io.js';
// Manifest reading lives in the model layer (the engine reads it too); re-exported for the converter's users.
import { readManifest } from '../model/manifest.js';
import { buildQFormerGraph } from './graphs/qformer.js';
import { buildT5CrossKvGraph, buildT5DecoderGraph, buildT5EncoderGraph } from './graphs/t5.js';
import { buildVisionGraph } from './graphs/vision.js';
import type { LayerContext, QuantOptions, WeightReader } from './layers.js';
import { GraphBuilder } from './onnx/graph-builder.js';
import { SafetensorsCheckpoint } from './safetensors.js';

export { readManifest };

/** Part of the model id (and so of image-cache keys): bump when converted graphs compute differently. */
export const CONVERTER_VERSION = '2';

/** Tokenizer and processor files copied from the HF dir when present (tokenizer.json is required). */
const COPIED_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'spiece.model',
  'added_tokens.json',
  'preprocessor_config.json',
  'generation_config.json',
];

export interface ConvertOptions {
  dtype?: WeightDtype;
  /** MatMulNBits K-block size (default 32; 128 for `mixed`). */
  blockSize?: number;
  /** MatMulNBits accuracy_level (default 4: int8 compute, the fastest CPU path). */
  accuracyLevel?: number;
  /** Replace an existing finished model. */
  force?: boolean;
  /** Marks the model as the seeded random demo model. */
  demo?: boolean;
  onProgress?: (progress: { graph: GraphName; tensorsRead: number; tensorsTotal: number }) => void;
  log?: (line: string) => void;
}

export interface ConvertSummary {
  outDir: string;
  dtype: WeightDtype;
  tensors: number;
  parameters: number;
  bytesWritten: number;
  seconds: number;
  unusedTensors: string[];
  modelId: string;
}

export class ConvertError extends UserFacingError {
  override name = 'ConvertError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('convert', message, options);
  }
}

const BUILDERS: Record<GraphName, (ctx: LayerContext, config: Blip2Config) => Promise<void>> = {
  vision: buildVisionGraph,
  qformer: buildQFormerGraph,
  encoder: buildT5EncoderGraph,
  crossKv: buildT5CrossKvGraph,
  decoder: buildT5DecoderGraph,
};

const GRAPH_DOCS: Record<GraphName, string> = {
  vision: 'BLIP-2 vision encoder: pixel_values -> image_embeds (post-layernorm)',
  qformer: 'BLIP-2 Q-Former + language_projection: image_embeds -> query_embeds',
  encoder: 'FlanT5 encoder over [query_embeds; embed(input_ids)]',
  crossKv: 'FlanT5 decoder cross-attention keys/values, once per request',
  decoder: 'FlanT5 decoder step with self-attention KV cache',
};

async function readSourceConfig(from: string): Promise<{ raw: unknown; config: Blip2Config }> {
  const path = join(from, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new ConvertError(
      `no config.json in ${from}: point --from at a Hugging Face BLIP-2 checkpoint directory`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConvertError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  try {
    return { raw, config: resolveBlip2Config(raw) };
  } catch (e) {
    if (e instanceof ConfigError) throw new ConvertError(`${path}: ${e.message}`);
    throw e;
  }
}

/** Counts distinct tensors read, for progress. */
class CountingReader implements WeightReader {
  readonly seen = new Set<string>();
  parameters = 0;
  constructor(
    private readonly checkpoint: SafetensorsCheckpoint,
    private readonly onRead: () => void,
  ) {}
  has(name: string): boolean {
    return this.checkpoint.has(name);
  }
  async read(name: string, expectedShape: readonly number[]): Promise<Float32Array> {
    const data = await this.checkpoint.read(name, expectedShape);
    if (!this.seen.has(name)) {
      this.seen.add(name);
      this.parameters += data.length;
      this.onRead();
    }
    return data;
  }
}

async function removeStalePartials(out: string): Promise<void> {
  const parent = dirname(out);
  const prefix = `${basename(out)}.partial-`;
  for (const entry of await readdir(parent).catch(() => [] as string[])) {
    if (entry.startsWith(prefix)) await rm(join(parent, entry), { recursive: true, force: true });
  }
}

export async function convertCheckpoint(
  from: string,
  out: string,
  options: ConvertOptions = {},
): Promise<ConvertSummary> {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const dtype: WeightDtype = options.dtype ?? 'fp32';
  if (!WEIGHT_DTYPES.includes(dtype))
    throw new ConvertError(`unknown dtype "${dtype}" (${WEIGHT_DTYPES.join(', ')})`);
  // `mixed` is the speed preset: its int4 kernels are markedly faster with 128-wide blocks (docs/benchmarks.md).
  const blockSize = options.blockSize ?? (dtype === 'mixed' ? 128 : 32);
  const accuracyLevel = options.accuracyLevel ?? 4;
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new ConvertError(`--block-size must be a power of two ≥ 16, got ${blockSize}`);
  }
  from = resolve(from);
  out = resolve(out);

  const { raw, config } = await readSourceConfig(from);
  if (!existsSync(join(from, 'tokenizer.json'))) {
    throw new ConvertError(
      `no tokenizer.json in ${from}: the engine needs the Hugging Face fast tokenizer file`,
    );
  }
  if (existsSync(out) && !options.force) {
    const existing = await readManifest(out);
    const entries = await readdir(out).catch(() => []);
    if (existing)
      throw new ConvertError(`${out} already holds a converted model; pass --force to replace it`);
    if (entries.length > 0)
      throw new ConvertError(`${out} exists and is not empty; choose another --out or pass --force`);
  }

  const checkpoint = await SafetensorsCheckpoint.open(from);
  await mkdir(dirname(out), { recursive: true });
  await removeStalePartials(out);
  const work = `${out}.partial-${process.pid}-${Date.now()}`;
  await mkdir(work);
  try {
    const tensorsTotal = checkpoint.names().length;
    let current: GraphName = 'vision';
    const reader = new CountingReader(checkpoint, () =>
      options.onProgress?.({ graph: current, tensorsRead: reader.seen.size, tensorsTotal }),
    );
    const graphs = {} as ModelManifest['graphs'];
    let bytesWritten = 0;
    for (const name of Object.keys(GRAPH_FILES) as GraphName[]) {
      current = name;
      const file = GRAPH_FILES[name];
      const builder = new GraphBuilder(name, join(work, `${file}.data`));
      const quant: QuantOptions = { format: DTYPE_FORMATS[dtype][name], blockSize, accuracyLevel };
      await BUILDERS[name]({ b: builder, weights: reader, quant }, config);
      const bytes = builder.finish(GRAPH_DOCS[name], { 'blip2-bot.dtype': dtype });
      await writeFile(join(work, file), bytes);
      const size = bytes.length + builder.externalBytes;
      bytesWritten += size;
      graphs[name] = {
        file,
        bytes: size,
        weights: quant.format,
        ...(builder.hasExternalData ? { dataFile: `${file}.data` } : {}),
      };
      log(`  ${file}: ${(size / 1e6).toFixed(1)} MB`);
    }

    const tokenizerFiles: string[] = [];
    for (const f of COPIED_FILES) {
      if (existsSync(join(from, f))) {
        await copyFile(join(from, f), join(work, f));
        tokenizerFiles.push(f);
      }
    }
    let preprocessorConfig: unknown;
    if (tokenizerFiles.includes('preprocessor_config.json')) {
      preprocessorConfig = JSON.parse(await readFile(join(work, 'preprocessor_config.json'), 'utf8'));
    } else {
      log(
        'note: no preprocessor_config.json in the checkpoint; the engine uses BLIP-2 defaults (224×224, bicubic, CLIP mean/std)',
      );
    }

    const unused = checkpoint.unusedNames().filter((n) => !reader.seen.has(n));
    if (unused.length > 0) {
      log(`note: ignored ${unused.length} unused tensors (e.g. ${unused.slice(0, 3).join(', ')})`);
    }
    const checksum = checkpoint.checksum();
    const modelId = `${basename(from)}-${dtype}-${createHash('sha256').update(checksum).update(dtype).update(CONVERTER_VERSION).digest('hex').slice(0, 12)}`;
    const seconds = (performance.now() - started) / 1000;
    const manifest: ModelManifest = {
      format: MODEL_FORMAT,
      formatVersion: MODEL_FORMAT_VERSION,
      complete: true,
      createdAt: new Date().toISOString(),
      converterVersion: CONVERTER_VERSION,
      modelId,
      dtype,
      ...(dtype !== 'fp32' ? { quantization: { blockSize, accuracyLevel } } : {}),
      demo: options.demo ?? false,
      source: { dir: from, checksum, config: raw },
      graphs,
      tokenizerFiles,
      ...(preprocessorConfig ? { preprocessorConfig } : {}),
      stats: { tensors: reader.seen.size, parameters: reader.parameters, bytesWritten, seconds },
    };
    await writeFile(join(work, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);

    if (existsSync(out)) {
      const old = `${out}.partial-old-${process.pid}-${Date.now()}`;
      await rename(out, old);
      await rename(work, out);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(work, out);
    }
    return {
      outDir: out,
      dtype,
      tensors: reader.seen.size,
      parameters: reader.parameters,
      bytesWritten,
      seconds,
      unusedTensors: unused,
      modelId,
    };
  } catch (e) {
    await rm(work, { recursive: true, force: true });
    throw e;
  } finally {
    await checkpoint.close();
  }
}
