import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConvertModelSummary, convertModel } from '../../src/calibrate/convert-model.js';
import { runModel } from '../../src/calibrate/graph-runs.js';
import { readManifest } from '../../src/convert/convert.js';
import { type LoadedTensor, readSafetensorsFile } from '../../src/convert/safetensors.js';
import { resolveBlip2Config } from '../../src/model/config.js';
import {
  DEFAULT_CALIBRATION_BOUNDS,
  KERNELS,
  type MatMulPrecision,
  quantisesActivations,
} from '../../src/model/precision.js';
import { HAS_SHARED, SHARED_SKIP_REASON, TINY_FIXTURE_DIR } from '../helpers/shared.js';
import { compare } from '../helpers/tensors.js';
import { PLANTED_NODES, writePlantedCheckpoint } from './plant-outliers.js';

/** "Question: what is in the picture? Answer:" + </s>, the prompt golden.json used. */
const PROMPT_IDS = [11860, 10, 125, 19, 16, 8, 1554, 58, 11801, 10, 1];
const ACTIVATION_KERNELS = KERNELS.filter(quantisesActivations);

function byNode(s: ConvertModelSummary): Map<string, MatMulPrecision> {
  const out = new Map<string, MatMulPrecision>();
  for (const m of Object.values(s.manifest.precision!.matmuls)) out.set(m.node, m);
  return out;
}

describe.skipIf(!HAS_SHARED)('calibrated --dtype auto on planted activation outliers', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-planted-'));
  const plantedHf = join(work, 'planted-hf');
  let clean: ConvertModelSummary;
  let planted: ConvertModelSummary;
  let plantedFp32: string;

  beforeAll(async () => {
    await writePlantedCheckpoint(TINY_FIXTURE_DIR, plantedHf);
    plantedFp32 = join(work, 'planted-fp32');
    await convertModel(plantedHf, plantedFp32, { dtype: 'fp32' });
    clean = await convertModel(TINY_FIXTURE_DIR, join(work, 'clean-auto'));
    planted = await convertModel(plantedHf, join(work, 'planted-auto'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('plants function-preserving outliers: the fp32 conversion still matches the HF goldens', async () => {
    const golden = await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'golden.safetensors'));
    const config = resolveBlip2Config((await readManifest(plantedFp32))!.source.config);
    const pixels = [0, 1, 2].map((i) => {
      const p = golden.get(`pixel_values.${i}`) as LoadedTensor;
      return { data: p.data as Float32Array, dims: p.shape };
    });
    const run = await runModel(plantedFp32, {
      config,
      pixels,
      samples: pixels.map((_, image) => ({ image, inputIds: PROMPT_IDS })),
      newTokens: 1,
    });
    for (let i = 0; i < 3; i++) {
      const pairs: [Float32Array, string][] = [
        [run.vision[i]!.outputs.image_embeds!.data as Float32Array, `vision.last_hidden_state.${i}`],
        [run.qformer[i]!.outputs.query_embeds!.data as Float32Array, `language_projection.${i}`],
        [
          run.encoder[i]!.outputs.encoder_hidden_states!.data as Float32Array,
          `t5.encoder.last_hidden_state.${i}`,
        ],
        [run.decoder[i]!.outputs.logits!.data as Float32Array, `t5.logits.step0.${i}`],
      ];
      for (const [got, name] of pairs) {
        expect(compare(got, golden.get(name)!.data as Float32Array).scaled, name).toBeLessThan(1e-4);
      }
    }
  });

  it('the planted MatMuls really see massive inputs, the clean ones do not', () => {
    const c = byNode(clean);
    const p = byNode(planted);
    for (const node of PLANTED_NODES) {
      const ratio = (m: MatMulPrecision) => m.input!.maxAbs / m.input!.medianAbs;
      expect(ratio(p.get(node)!), node).toBeGreaterThan(10 * ratio(c.get(node)!));
    }
  });

  it('keeps every planted MatMul off activation-quantising kernels, and the measured errors show why', () => {
    const c = byNode(clean);
    const p = byNode(planted);
    for (const node of PLANTED_NODES) {
      const m = p.get(node)!;
      expect(quantisesActivations(m.kernel), `${node} runs ${m.kernel}`).toBe(false);
      for (const k of ACTIVATION_KERNELS) {
        const error = m.candidates![k]!.activation;
        expect(error, `${node} ${k}`).toBeGreaterThan(DEFAULT_CALIBRATION_BOUNDS.activation);
        expect(error, `${node} ${k} vs clean`).toBeGreaterThan(3 * c.get(node)!.candidates![k]!.activation);
      }
    }
    // The same MatMuls in the clean checkpoint pass on an activation-quantising kernel (except wo: policy).
    for (const node of PLANTED_NODES.filter((n) => !n.endsWith('/wo'))) {
      expect(quantisesActivations(c.get(node)!.kernel), `${node} clean`).toBe(true);
    }
  });

  it('still quantises every other MatMul outside the Q-Former', () => {
    const plantedNodes = new Set<string>(PLANTED_NODES);
    for (const m of byNode(planted).values()) {
      if (m.graph === 'qformer') expect(m.kernel).toBe('fp32');
      else if (!plantedNodes.has(m.node)) expect(m.kernel, m.node).not.toBe('fp32');
    }
  });

  it('records every MatMul weight by checkpoint name, with kernel and measured error, and reports loudly', () => {
    const matmuls = planted.manifest.precision!.matmuls;
    expect(matmuls['language_model.encoder.block.1.layer.1.DenseReluDense.wo.weight']?.node).toBe(
      '/encoder/block.1/layer.1/DenseReluDense/wo',
    );
    const wi0 = matmuls['language_model.encoder.block.0.layer.1.DenseReluDense.wi_0.weight']!;
    expect(wi0.fusedWith).toEqual(['language_model.encoder.block.0.layer.1.DenseReluDense.wi_1.weight']);
    for (const [name, m] of Object.entries(matmuls)) {
      expect(KERNELS, name).toContain(m.kernel);
      if (m.graph !== 'qformer') expect(typeof m.error, name).toBe('number');
    }
    const fidelity = planted.manifest.fidelity!;
    expect(fidelity.endToEnd.prompts).toBe(12);
    const fellBack = Object.values(fidelity.graphs).flatMap((g) => g.fp32Fallbacks);
    if (fellBack.length > 0) {
      expect(planted.report.some((l) => l.startsWith('WARNING:') && l.includes('run fp32'))).toBe(true);
    }
    expect(planted.report.join('\n')).toMatch(/Activation outliers/);
  });
});

describe.skipIf(HAS_SHARED)('calibrated --dtype auto on planted activation outliers', () => {
  it.skip(SHARED_SKIP_REASON, () => {});
});
