/**
 * `convertModel`: the one entry point the CLI (`convert`, `models pull`) uses to turn a Hugging Face checkpoint
 * into a model dir. Fixed formats go straight to the converter. `auto` (the default) calibrates:
 *
 * 1. convert an fp32 reference whose graphs also output every MatMul's input ("taps");
 * 2. run it graph by graph (one session at a time) on the bundled photos with caption and question prompts;
 * 3. for each MatMul, measure every kernel on its captured inputs and keep the fastest within the bounds
 *    (choose-kernel.ts), under the policy's hard rules (src/model/precision.ts);
 * 4. convert again with that plan, compare the result with the reference (fidelity.ts), write the report into
 *    the manifest, and move the model into place.
 *
 * This module sits above both the converter and the engine (calibration uses the engine's preprocessing,
 * tokenizer and prompts), so neither of those imports the other.
 */

import { existsSync } from 'node:fs';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  type BuiltMatMul,
  type ConvertOptions,
  type ConvertSummary,
  checkOutDir,
  convertCheckpoint,
  readManifest,
} from '../convert/convert.js';
import { transpose2d } from '../convert/layers.js';
import { preprocessImage } from '../engine/preprocess.js';
import { parsePreprocessorConfig } from '../engine/preprocess-config.js';
import { buildPrompt, promptStyleFor } from '../engine/prompt.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import { resolveBlip2Config } from '../model/config.js';
import { MANIFEST_FILE, type ModelManifest, type WeightDtype } from '../model/graph-io.js';
import {
  type CalibrationBounds,
  DEFAULT_CALIBRATION_BOUNDS,
  FP32_GRAPHS,
  type Kernel,
  type MatMulPrecision,
  type MatMulSite,
} from '../model/precision.js';
import { CALIBRATION_NEW_TOKENS, CALIBRATION_PROMPTS, loadCalibrationImages } from './calibration-set.js';
import { chooseKernel } from './choose-kernel.js';
import { compareWithReference } from './fidelity.js';
import { runModel, type SampleInput } from './graph-runs.js';
import { activationStats, measureKernels } from './measure-kernels.js';
import { formatReport } from './report.js';

export type ModelDtype = WeightDtype;

export interface ConvertModelOptions extends ConvertOptions {
  /** Default `auto`. */
  dtype?: ModelDtype;
  /** `auto`: error bounds (default DEFAULT_CALIBRATION_BOUNDS). */
  bounds?: CalibrationBounds;
  /** `auto`: calibration photos dir (default the bundled assets/calibration). */
  calibrationDir?: string;
}

export interface ConvertModelSummary extends ConvertSummary {
  /** The fidelity report printed at the end of a conversion (lines, no trailing newline). */
  report: string[];
  manifest: ModelManifest;
}

/** Input rows a MatMul is measured on at most: enough for stable errors, bounded time at full size. */
const MAX_ROWS = 1024;

export async function convertModel(
  from: string,
  out: string,
  options: ConvertModelOptions = {},
): Promise<ConvertModelSummary> {
  const dtype = options.dtype ?? 'auto';
  if (dtype !== 'auto') {
    const summary = await convertCheckpoint(from, out, { ...options, dtype });
    const manifest = (await readManifest(summary.outDir))!;
    return { ...summary, manifest, report: formatReport(manifest) };
  }
  return convertCalibrated(resolve(from), resolve(out), options);
}

/** Reads an fp32 weight back from a reference graph's data file, in HF layout [n, k]. */
async function readWeight(built: BuiltMatMul): Promise<Float32Array> {
  const { location, site } = built;
  if (!location) throw new Error(`no external weight for ${site.node}`);
  const fh = await open(built.dataFile, 'r');
  try {
    const buf = new Uint8Array(location.length);
    await fh.read(buf, 0, location.length, location.offset);
    // Stored transposed ([k, n]) for MatMul.
    return transpose2d(new Float32Array(buf.buffer), site.k, site.n);
  } finally {
    await fh.close();
  }
}

/** Whole runs, evenly spread, up to about `max` rows in all. */
function sampleRuns(runs: readonly Float32Array[], k: number, max: number): Float32Array[] {
  const rows = runs.reduce((n, x) => n + x.length / k, 0);
  if (rows <= max) return [...runs];
  const keep = Math.max(1, Math.floor((runs.length * max) / rows));
  return Array.from({ length: keep }, (_, i) => runs[Math.floor((i * runs.length) / keep)]!);
}

async function convertCalibrated(
  from: string,
  out: string,
  options: ConvertModelOptions,
): Promise<ConvertModelSummary> {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const bounds = options.bounds ?? DEFAULT_CALIBRATION_BOUNDS;
  await checkOutDir(out, options.force ?? false);
  const stamp = `${process.pid}-${Date.now()}`;
  const refDir = `${out}.calibration-reference-${stamp}`;
  const finalDir = `${out}.calibrated-${stamp}`;
  try {
    // 1. The fp32 reference, with taps.
    log('auto: converting an fp32 reference for calibration');
    const sites = new Map<string, BuiltMatMul>();
    await convertCheckpoint(from, refDir, {
      ...options,
      dtype: 'fp32',
      taps: true,
      force: true,
      onMatMul: (m) => sites.set(`${m.site.graph}:${m.site.node}`, m),
    });
    const refManifest = (await readManifest(refDir))!;
    const config = resolveBlip2Config(refManifest.source.config);

    // 2. Calibration inputs: bundled photos × the bot's prompt styles.
    const images = await loadCalibrationImages(options.calibrationDir);
    const preprocessor = parsePreprocessorConfig(refManifest.preprocessorConfig);
    const pixels = await Promise.all(
      images.map(async (img) => {
        const p = await preprocessImage(img.bytes, preprocessor);
        return { data: p.data, dims: p.dims };
      }),
    );
    const tokenizer = await loadTokenizer(refDir, config.languageModel);
    const budget = 512 - config.numQueryTokens;
    const style = promptStyleFor(config.languageModel);
    const promptTexts = CALIBRATION_PROMPTS.map(
      (p) => buildPrompt(p, (t) => tokenizer.countTokens(t), budget, style).text,
    );
    const samples: SampleInput[] = [];
    for (let image = 0; image < images.length; image++) {
      for (const text of promptTexts) samples.push({ image, inputIds: tokenizer.encode(text) });
    }

    // 3. Measure and choose, graph by graph, while each graph's taps are in memory.
    const plan = new Map<string, { kernel: Kernel; record: Partial<MatMulPrecision> }>();
    const reference = await runModel(refDir, {
      config,
      pixels,
      samples,
      newTokens: CALIBRATION_NEW_TOKENS,
      onGraphTaps: async (graph, taps) => {
        const graphSites = [...sites.values()].filter((m) => m.site.graph === graph);
        log(`auto: measuring ${graphSites.length} MatMuls of ${graph}`);
        for (const built of graphSites) {
          const { site } = built;
          const runs = taps.runs(site.node);
          if (!runs) throw new Error(`calibration saw no input for ${site.node}`);
          const input = activationStats(runs);
          if (FP32_GRAPHS.has(graph)) {
            plan.set(key(site), { kernel: 'fp32', record: { input } });
            continue;
          }
          const measured = await measureKernels(
            await readWeight(built),
            site.n,
            site.k,
            sampleRuns(runs, site.k, MAX_ROWS),
            options.blockSize ?? 128,
          );
          const choice = chooseKernel(site, measured, bounds);
          plan.set(key(site), {
            kernel: choice.kernel,
            record: { error: choice.error, candidates: measured, input },
          });
        }
      },
    });

    // 4. The calibrated model.
    log('auto: converting with the calibrated kernels');
    const summary = await convertCheckpoint(from, finalDir, {
      ...options,
      dtype: 'auto',
      force: true,
      plan: {
        kernelFor: (site) => plan.get(key(site))?.kernel ?? 'fp32',
        record: (site) => plan.get(key(site))?.record ?? {},
        bounds,
      },
    });
    await rm(refDir, { recursive: true, force: true });
    const seconds = (performance.now() - started) / 1000;

    log('auto: comparing with the fp32 reference');
    const manifest = (await readManifest(finalDir))!;
    manifest.fidelity = await compareWithReference(finalDir, manifest, reference, {
      config,
      pixels,
      samples,
      newTokens: CALIBRATION_NEW_TOKENS,
      calibration: {
        images: images.map((i) => i.name),
        prompts: promptTexts,
        samples: samples.length,
        seconds,
      },
    });
    manifest.stats.seconds = (performance.now() - started) / 1000;
    await writeFile(join(finalDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    await moveIntoPlace(finalDir, out);
    return {
      ...summary,
      outDir: out,
      seconds: manifest.stats.seconds,
      manifest,
      report: formatReport(manifest),
    };
  } finally {
    await rm(refDir, { recursive: true, force: true });
    await rm(finalDir, { recursive: true, force: true });
  }
}

function key(site: MatMulSite): string {
  return `${site.graph}:${site.node}`;
}

/** Replaces `out` with `dir` so that no moment leaves `out` half-written. */
async function moveIntoPlace(dir: string, out: string): Promise<void> {
  if (!existsSync(out)) {
    await rename(dir, out);
    return;
  }
  const old = `${out}.partial-old-${process.pid}-${Date.now()}`;
  await rename(out, old);
  await rename(dir, out);
  await rm(old, { recursive: true, force: true });
}
