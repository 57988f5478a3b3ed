/**
 * Plants massive activations in the tiny fixture the way trained models have them, with function-preserving
 * rescalings, so the fp32 model computes the same thing while chosen MatMuls see one input channel far above
 * the rest:
 * - gated FFN: row j of the linear branch `wi_1` × A, column j of `wo` ÷ A (wo's input channel j grows A×);
 * - a norm's gain (and bias) on channel c × B, the matching input columns of the next projections ÷ B.
 */
import { copyFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensorsFile, writeSafetensors } from '../../src/convert/safetensors.js';

export const SCALE = 100;

/** The MatMul nodes whose inputs carry a planted outlier channel. */
export const PLANTED_NODES = [
  '/vision/layers.1/mlp/fc1',
  '/encoder/block.0/layer.1/DenseReluDense/wi',
  '/encoder/block.1/layer.1/DenseReluDense/wo',
  '/decoder/block.0/layer.2/DenseReluDense/wi',
] as const;

type Tensors = Map<string, { dtype: string; shape: number[]; data: Float32Array }>;

function scaleRow(t: Tensors, name: string, row: number, by: number): void {
  const { shape, data } = t.get(name)!;
  const k = shape[1]!;
  for (let c = 0; c < k; c++) data[row * k + c]! *= by;
}

function scaleColumn(t: Tensors, name: string, col: number, by: number): void {
  const { shape, data } = t.get(name)!;
  const [n, k] = shape as [number, number];
  for (let r = 0; r < n; r++) data[r * k + col]! *= by;
}

function scaleEntry(t: Tensors, name: string, i: number, by: number): void {
  t.get(name)!.data[i]! *= by;
}

/** Writes a copy of the HF checkpoint dir `from` into `to` with the outliers planted. */
export async function writePlantedCheckpoint(from: string, to: string): Promise<void> {
  const tensors = (await readSafetensorsFile(join(from, 'model.safetensors'))) as unknown as Tensors;
  const A = SCALE;
  const B = SCALE;
  // Vision layer 1: layer_norm2 channel 7 feeds fc1.
  const v = 'vision_model.encoder.layers.1';
  scaleEntry(tensors, `${v}.layer_norm2.weight`, 7, B);
  scaleEntry(tensors, `${v}.layer_norm2.bias`, 7, B);
  scaleColumn(tensors, `${v}.mlp.fc1.weight`, 7, 1 / B);
  // T5 encoder block 0: the FFN's RMS-norm gain on channel 3 feeds wi_0 and wi_1.
  const e0 = 'language_model.encoder.block.0.layer.1';
  scaleEntry(tensors, `${e0}.layer_norm.weight`, 3, B);
  scaleColumn(tensors, `${e0}.DenseReluDense.wi_0.weight`, 3, 1 / B);
  scaleColumn(tensors, `${e0}.DenseReluDense.wi_1.weight`, 3, 1 / B);
  // T5 encoder block 1: hidden channel 5 of the gated FFN, into wo.
  const e1 = 'language_model.encoder.block.1.layer.1.DenseReluDense';
  scaleRow(tensors, `${e1}.wi_1.weight`, 5, A);
  scaleColumn(tensors, `${e1}.wo.weight`, 5, 1 / A);
  // T5 decoder block 0: the FFN's RMS-norm gain on channel 11.
  const d0 = 'language_model.decoder.block.0.layer.2';
  scaleEntry(tensors, `${d0}.layer_norm.weight`, 11, B);
  scaleColumn(tensors, `${d0}.DenseReluDense.wi_0.weight`, 11, 1 / B);
  scaleColumn(tensors, `${d0}.DenseReluDense.wi_1.weight`, 11, 1 / B);

  await writeSafetensors(
    join(to, 'model.safetensors'),
    [...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })),
  );
  for (const f of await readdir(from)) {
    if (f.endsWith('.json') && !f.startsWith('golden') && f !== 'model.safetensors.index.json') {
      await copyFile(join(from, f), join(to, f));
    }
    if (f === 'spiece.model') await copyFile(join(from, f), join(to, f));
  }
}
