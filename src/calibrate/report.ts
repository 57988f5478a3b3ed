/**
 * The fidelity report as people read it: printed at the end of `convert`/`models pull` and by `models info`.
 * Everything comes from `manifest.json`, so the report of a model converted earlier reads the same.
 */
import type { GraphEntry, GraphName, ModelManifest } from '../model/graph-io.js';
import type { Kernel } from '../model/precision.js';

function kernelMix(kernels: Partial<Record<Kernel, number>> | undefined): string {
  const entries = Object.entries(kernels ?? {}).filter(([, n]) => (n ?? 0) > 0);
  return entries.length === 0 ? 'no weight MatMuls' : entries.map(([k, n]) => `${n}× ${k}`).join(', ');
}

function num(x: number, digits = 4): string {
  if (x === 0) return '0';
  return Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toFixed(digits);
}

export function formatReport(manifest: ModelManifest): string[] {
  const lines: string[] = [];
  const p = manifest.precision;
  lines.push(`Precision: --dtype ${manifest.dtype}${p ? `, MatMulNBits block ${p.blockSize}` : ''}`);
  for (const [graph, g] of Object.entries(manifest.graphs) as [GraphName, GraphEntry][]) {
    lines.push(`  ${graph.padEnd(8)} ${kernelMix(g.kernels)}`);
  }
  const policies = new Set(Object.values(p?.matmuls ?? {}).flatMap((m) => (m.policy ? [m.policy] : [])));
  if (policies.size > 0) lines.push(`  policy: ${[...policies].join('; ')}`);
  const f = manifest.fidelity;
  if (!f) return lines;

  if (p?.bounds) {
    lines.push(
      `Calibration: ${f.calibration.samples} prompts over ${f.calibration.images.length} photos (reference, measurements and calibrated conversion took ${f.calibration.seconds.toFixed(0)} s); bounds: activation error ≤ ${(100 * p.bounds.activation).toFixed(1)}%, weight error ≤ ${(100 * p.bounds.weight[4]).toFixed(0)}% (4-bit) / ${(100 * p.bounds.weight[8]).toFixed(0)}% (8-bit)`,
    );
  }
  lines.push('Activation outliers (MatMul input max|x| / median|x|, largest per graph):');
  for (const [graph, g] of Object.entries(f.graphs)) {
    const top = g.outliers[0];
    if (top)
      lines.push(`  ${graph.padEnd(8)} ${num(top.ratio, 0)}× at ${top.node} (max ${num(top.maxAbs, 2)})`);
  }
  lines.push('Agreement with fp32 on identical inputs (cosine, max abs error):');
  for (const [graph, g] of Object.entries(f.graphs)) {
    for (const a of g.agreement) {
      lines.push(`  ${graph.padEnd(8)} ${a.output}: ${a.cosine.toFixed(5)}, ${num(a.maxAbsError, 3)}`);
    }
  }
  const e = f.endToEnd;
  lines.push(
    `End to end on the calibration prompts: greedy ids identical for ${e.identicalGreedy}/${e.prompts}; top-5 overlap of step logits ${(100 * e.top5Overlap).toFixed(1)}%`,
  );
  if (manifest.demo || e.identicalGreedy < e.prompts) {
    lines.push(
      '  (random-weight models amplify any rounding through the stack, so their end-to-end figures say little; on trained weights they are the ones to read)',
    );
  }
  for (const w of f.warnings) lines.push(`WARNING: ${w}`);
  return lines;
}
