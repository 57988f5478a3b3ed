/**
 * `convertModel`: the one entry point the CLI (`convert`, `models pull`) uses to turn a Hugging Face checkpoint
 * into a model dir. Fixed formats go straight to the converter; `auto` (the default) first converts an fp32
 * reference, calibrates every MatMul on bundled photos and then converts with the kernel each MatMul earned.
 *
 * This module sits above both the converter and the engine (calibration runs the fp32 reference with the
 * engine's preprocessing, tokenizer and onnxruntime), so neither of those imports the other.
 */
import { type ConvertOptions, type ConvertSummary, convertCheckpoint } from '../convert/convert.js';
import type { WeightDtype } from '../model/graph-io.js';

export type ModelDtype = WeightDtype | 'auto';

export interface ConvertModelOptions extends Omit<ConvertOptions, 'dtype'> {
  /** Default `auto`. */
  dtype?: ModelDtype;
}

export interface ConvertModelSummary extends ConvertSummary {
  /** The fidelity report printed at the end of a conversion (lines, no trailing newline). */
  report: string[];
}

export async function convertModel(
  from: string,
  out: string,
  options: ConvertModelOptions = {},
): Promise<ConvertModelSummary> {
  const dtype = options.dtype ?? 'auto';
  // Placeholder until calibration lands: `auto` converts as `mixed`.
  const summary = await convertCheckpoint(from, out, {
    ...options,
    dtype: dtype === 'auto' ? 'mixed' : dtype,
  });
  return { ...summary, report: [] };
}
