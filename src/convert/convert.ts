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
  graphSignature,
  type HubSource,
  MANIFEST_FILE,
  MODEL_FORMAT,
  MODEL_FORMAT_VERSION,
  MODEL_GRAPHS,
  type ModelManifest,
  WEIGHT_DTYPES,
  type WeightDtype,
} from '../model/graph-io.js';
// Manifest reading lives in the model layer (the engine reads it too); re-exported for the converter's users.
import { readManifest } from '../model/manifest.js';
import {
  fixedKernel,
  type Kernel,
  type MatMulPrecision,
  type MatMulSite,
  type PrecisionManifest,
  policyReason,
} from '../model/precision.js';
import { processAlive } from '../util/process-alive.js';
import { buildOptGraph } from './graphs/opt.js';
import { buildQFormerGraph } from './graphs/qformer.js';
import { buildT5CrossKvGraph, buildT5DecoderGraph, buildT5EncoderGraph } from './graphs/t5.js';
import { buildVisionGraph } from './graphs/vision.js';
import type { LayerContext, QuantOptions, WeightReader } from './layers.js';
import { GraphBuilder } from './onnx/graph-builder.js';
import { SafetensorsCheckpoint } from './safetensors.js';

export { readManifest };

/** Part of the model id (and so of image-cache keys): bump when converted graphs compute differently. */
export const CONVERTER_VERSION = '2';

/**
 * Tokenizer and processor files copied from the HF dir when present: FlanT5 needs tokenizer.json; OPT's GPT-2
 * tokenizer can also come from vocab.json + merges.txt. Not generation_config.json: the engine takes its token ids
 * from config.json and its generation defaults follow LAVIS (README "Commands"), so a copy would go unread.
 */
const COPIED_FILES = [
  'tokenizer.json',
  'vocab.json',
  'merges.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'spiece.model',
  'added_tokens.json',
  'preprocessor_config.json',
];

/** Per-MatMul kernels from calibration (`--dtype auto`); see src/calibrate/. */
export interface KernelPlan {
  kernelFor(site: MatMulSite): Kernel;
  /** What to record beside the kernel (measured errors, input statistics). */
  record?(site: MatMulSite): Partial<MatMulPrecision>;
  bounds?: PrecisionManifest['bounds'];
}

/** A weight MatMul as built, and where its fp32 weight ([K, N]) lies in the graph's data file. */
export interface BuiltMatMul {
  site: MatMulSite;
  kernel: Kernel;
  dataFile: string;
  location?: { offset: number; length: number };
}

export interface ConvertOptions {
  dtype?: WeightDtype;
  /** MatMulNBits K-block size (default 32; 128 for `mixed` and `auto`). */
  blockSize?: number;
  /** MatMulNBits accuracy_level of fixed formats: 4 (int8 activations, default, the fastest CPU path) or 1 (fp32). */
  accuracyLevel?: number;
  /** Required with `dtype: 'auto'`: the calibrated kernels. */
  plan?: KernelPlan;
  /** Calibration reference builds: expose every MatMul's input as a graph output. */
  taps?: boolean;
  /** Told of each weight MatMul after its graph is written. */
  onMatMul?: (built: BuiltMatMul) => void;
  /** Replace an existing finished model. */
  force?: boolean;
  /** Marks the model as the seeded random demo model. */
  demo?: boolean;
  /** Recorded in the manifest's `source.hub` by `models pull`. */
  hub?: HubSource;
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
  opt: buildOptGraph,
};

const GRAPH_DOCS: Record<GraphName, string> = {
  vision: 'BLIP-2 vision encoder: pixel_values -> image_embeds (post-layernorm)',
  qformer: 'BLIP-2 Q-Former + language_projection: image_embeds -> query_embeds',
  encoder: 'FlanT5 encoder over [query_embeds; embed(input_ids)]',
  crossKv: 'FlanT5 decoder cross-attention keys/values, once per request',
  decoder: 'FlanT5 decoder step with self-attention KV cache',
  opt: 'OPT decoder over [query_embeds; embed(input_ids)] (prefill) or one token, with a KV cache',
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

/** Refuses to write over a finished model or a non-empty dir unless forced. */
export async function checkOutDir(out: string, force: boolean): Promise<void> {
  if (!existsSync(out) || force) return;
  if (await readManifest(out))
    throw new ConvertError(`${out} already holds a converted model; pass --force to replace it`);
  if ((await readdir(out).catch(() => [])).length > 0)
    throw new ConvertError(`${out} exists and is not empty; choose another --out or pass --force`);
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

/** One manifest record per checkpoint weight; a fused MatMul's weights each get one, naming the others. */
function recordMatMul(
  matmuls: Record<string, MatMulPrecision>,
  site: MatMulSite,
  kernel: Kernel,
  extra: Partial<MatMulPrecision> | undefined,
): void {
  const policy = policyReason(site);
  for (const weight of site.weights) {
    const others = site.weights.filter((w) => w !== weight);
    matmuls[weight] = {
      kernel,
      graph: site.graph,
      node: site.node,
      ...(others.length > 0 ? { fusedWith: others } : {}),
      ...(policy ? { policy } : {}),
      ...extra,
    };
  }
}

async function removeStalePartials(out: string): Promise<void> {
  const parent = dirname(out);
  const prefix = `${basename(out)}.partial-`;
  for (const entry of await readdir(parent).catch(() => [] as string[])) {
    if (!entry.startsWith(prefix)) continue;
    // Another process converting into the same place at this moment (two workers writing the demo model on a
    // fresh machine) owns its partial dir: only a dead process's leftovers are stale.
    const pid = Number(/^(?:old-)?(\d+)-/.exec(entry.slice(prefix.length))?.[1]);
    if (pid && pid !== process.pid && processAlive(pid)) continue;
    await rm(join(parent, entry), { recursive: true, force: true });
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
  const plan = options.plan;
  if (dtype === 'auto' && !plan) {
    throw new ConvertError(
      'dtype auto needs a calibrated plan: convert through convertModel (src/calibrate/)',
    );
  }
  // The speed presets' int4 kernels are markedly faster with 128-wide blocks (docs/benchmarks.md).
  const blockSize = options.blockSize ?? (dtype === 'mixed' || dtype === 'auto' ? 128 : 32);
  const accuracyLevel = options.accuracyLevel ?? 4;
  if (accuracyLevel !== 1 && accuracyLevel !== 4) {
    throw new ConvertError(
      `--accuracy-level must be 4 (int8 activations) or 1 (fp32 activations), got ${accuracyLevel}`,
    );
  }
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new ConvertError(`--block-size must be a power of two ≥ 16, got ${blockSize}`);
  }
  from = resolve(from);
  out = resolve(out);

  const { raw, config } = await readSourceConfig(from);
  const hasBpeFiles = existsSync(join(from, 'vocab.json')) && existsSync(join(from, 'merges.txt'));
  if (!existsSync(join(from, 'tokenizer.json')) && !(config.languageModel === 'opt' && hasBpeFiles)) {
    throw new ConvertError(
      config.languageModel === 'opt'
        ? `no tokenizer.json, nor vocab.json and merges.txt, in ${from}: the engine needs the OPT tokenizer files`
        : `no tokenizer.json in ${from}: the engine needs the Hugging Face fast tokenizer file`,
    );
  }
  await checkOutDir(out, options.force ?? false);

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
    const matmuls: Record<string, MatMulPrecision> = {};
    const embeddings = dtype === 'fp32' ? 'fp32' : 'fp16';
    let bytesWritten = 0;
    for (const name of MODEL_GRAPHS[config.languageModel]) {
      current = name;
      const file = GRAPH_FILES[name];
      const builder = new GraphBuilder(name, join(work, `${file}.data`));
      builder.useSignature(graphSignature(name, config));
      const format = dtype === 'auto' ? undefined : DTYPE_FORMATS[dtype][name];
      const built: { site: MatMulSite; kernel: Kernel }[] = [];
      const quant: QuantOptions = {
        kernelFor: (site) => (plan ? plan.kernelFor(site) : fixedKernel(site, format!, accuracyLevel)),
        blockSize,
        onMatMul: (site, kernel) => built.push({ site, kernel }),
        embeddings,
        ...(options.taps ? { taps: true } : {}),
      };
      await BUILDERS[name]({ graph: name, b: builder, weights: reader, quant }, config);
      const bytes = builder.finish(GRAPH_DOCS[name], { 'blip2-bot.dtype': dtype });
      await writeFile(join(work, file), bytes);
      const size = bytes.length + builder.externalBytes;
      bytesWritten += size;
      const kernels: Partial<Record<Kernel, number>> = {};
      for (const { site, kernel } of built) {
        kernels[kernel] = (kernels[kernel] ?? 0) + 1;
        recordMatMul(matmuls, site, kernel, plan?.record?.(site));
        const location = builder.externalLocation(`${site.node}.weight`);
        options.onMatMul?.({
          site,
          kernel,
          dataFile: join(out, `${file}.data`),
          ...(location ? { location } : {}),
        });
      }
      graphs[name] = {
        file,
        bytes: size,
        weights: format ?? 'calibrated',
        kernels,
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
      languageModel: config.languageModel,
      ...(dtype !== 'fp32' ? { quantization: { blockSize, accuracyLevel } } : {}),
      precision: {
        dtype,
        blockSize,
        embeddings,
        ...(plan?.bounds ? { bounds: plan.bounds } : {}),
        matmuls,
      },
      demo: options.demo ?? false,
      source: { dir: from, checksum, config: raw, ...(options.hub ? { hub: options.hub } : {}) },
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
