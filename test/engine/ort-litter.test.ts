/** Processes that load onnxruntime leave nothing in the temp directory (its telemetry's empty debug log). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDemoModel } from '../../src/demo/demo-model.js';
import { ROOT } from '../helpers/shared.js';

describe('onnxruntime telemetry litter', () => {
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'blip2-ort-litter-'));
    await ensureDemoModel(join(work, 'demo'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function createSession(importLine: string, temp: string) {
    const script = `${importLine}
await create(${JSON.stringify(join(work, 'demo', 'qformer.onnx'))});
// Ended by a signal, as vitest ends its workers: no exit handler runs.
process.kill(process.pid, 'SIGKILL');
`;
    // The telemetry stays off (and writes nothing) when CI is set, as it is on CI machines: run as a user would.
    const { CI: _ci, ...userEnv } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...userEnv, TMPDIR: temp },
      timeout: 60_000,
    });
    expect(r.signal, r.stderr).toBe('SIGKILL');
    return String(r.pid);
  }

  it('removes the empty mat-debug-<pid>.log onnxruntime-node writes on first session', () => {
    const raw = mkdtempSync(join(work, 'tmp-raw-'));
    const ours = mkdtempSync(join(work, 'tmp-ours-'));
    // The bare package does litter (so this test can fail): our wrapper is what cleans up.
    const rawPid = createSession(
      "import * as ort from 'onnxruntime-node'; const create = (f) => ort.InferenceSession.create(f);",
      raw,
    );
    expect(readdirSync(raw)).toContain(`mat-debug-${rawPid}.log`);
    createSession(
      `import { createSession as create } from ${JSON.stringify(join(ROOT, 'src', 'engine', 'ort.ts'))};`,
      ours,
    );
    expect(readdirSync(ours).filter((f) => f.startsWith('mat-debug-'))).toEqual([]);
  });
});
