/**
 * vitest globalSetup: every test run gets its own temp directory (TMPDIR, inherited by the workers and by every
 * process the tests spawn), and the run fails if anything is left in it at the end. Tests remove what they create;
 * so do our processes (onnxruntime's telemetry log, see src/engine/ort.ts).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** onnxruntime's telemetry session state: one small file per temp dir, rewritten by every process, not litter. */
const IGNORED = new Set(['.ses']);
/** tsx's transform cache (tsx-<uid>), shared by every process that runs TypeScript: a cache, not litter. */
const IGNORED_PATTERN = /^tsx-\d+$/;

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'blip2-test-run-'));
  process.env.TMPDIR = dir;
  return () => {
    const left = readdirSync(dir).filter((name) => !IGNORED.has(name) && !IGNORED_PATTERN.test(name));
    rmSync(dir, { recursive: true, force: true });
    if (left.length > 0) {
      throw new Error(`the tests left ${left.length} entries in the temp dir: ${left.sort().join(', ')}`);
    }
  };
}
