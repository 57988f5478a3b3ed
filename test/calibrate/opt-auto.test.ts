import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConvertModelSummary, convertModel } from '../../src/calibrate/convert-model.js';
import { KERNELS } from '../../src/model/precision.js';
import { HAS_SHARED, SHARED_DIR } from '../helpers/shared.js';

const OPT_FIXTURE = join(SHARED_DIR, 'fixtures', 'blip2-opt-tiny');

describe.skipIf(!HAS_SHARED)('calibrated --dtype auto on an OPT checkpoint', () => {
  const work = mkdtempSync(join(tmpdir(), 'blip2-opt-auto-'));
  let s: ConvertModelSummary;
  beforeAll(async () => {
    s = await convertModel(OPT_FIXTURE, join(work, 'auto'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('measures and records every OPT MatMul, keeps the Q-Former fp32 and reports agreement for the OPT graph', () => {
    const matmuls = s.manifest.precision!.matmuls;
    const fc2 = matmuls['language_model.model.decoder.layers.1.fc2.weight']!;
    expect(fc2.graph).toBe('opt');
    expect(KERNELS).toContain(fc2.kernel);
    expect(fc2.candidates?.['nbits4-a8']?.activation).toBeGreaterThan(0);
    const opt = Object.values(matmuls).filter((m) => m.graph === 'opt');
    expect(opt.length).toBeGreaterThanOrEqual(12);
    for (const m of opt) expect(typeof m.error).toBe('number');
    for (const m of Object.values(matmuls).filter((m) => m.graph === 'qformer'))
      expect(m.kernel).toBe('fp32');
    const agreement = s.manifest.fidelity!.graphs.opt!.agreement[0]!;
    expect(agreement.output).toBe('logits');
    expect(agreement.cosine).toBeGreaterThan(0.9);
    expect(s.manifest.fidelity!.endToEnd.prompts).toBe(12);
    expect(s.report.join('\n')).toMatch(/opt\s+\d+× nbits/);
  });
});
