/**
 * The one import of onnxruntime-node. Its bundled telemetry SDK opens an empty `mat-debug-<pid>.log` in the temp
 * directory the first time a session is created and never removes it: one file per process, dozens per test run.
 * We remove our own process's file on exit while it is still empty (a non-empty one may be someone's debugging).
 */
import { rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

/** Where the SDK writes: $TMPDIR, else /tmp (it does not read TMP or TEMP). */
function telemetryLogPaths(): string[] {
  const dirs = new Set([process.env.TMPDIR || '/tmp', tmpdir()]);
  return [...dirs].map((dir) => join(dir, `mat-debug-${process.pid}.log`));
}

export function removeTelemetryLog(): void {
  for (const path of telemetryLogPaths()) {
    try {
      if (statSync(path).size === 0) rmSync(path, { force: true });
    } catch {
      // Not there: nothing to clean up.
    }
  }
}

process.once('exit', removeTelemetryLog);

export { ort };
