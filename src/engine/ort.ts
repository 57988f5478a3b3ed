/**
 * The one import of onnxruntime-node. Its bundled telemetry SDK opens an empty `mat-debug-<pid>.log` in the temp
 * directory the first time a session is created and never removes it: one file per process, dozens per test run.
 * `createSession` removes our own process's file right after the first session while it is still empty (a
 * non-empty one may be someone's debugging); the SDK keeps writing nothing to the unlinked file. Removing it at
 * exit instead would miss every process ended by a signal.
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

let cleaned = false;

/** `ort.InferenceSession.create`, and the telemetry log removed after the first one. */
export async function createSession(
  path: string,
  options?: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  const session = await ort.InferenceSession.create(path, options ?? {});
  if (!cleaned) {
    cleaned = true;
    removeTelemetryLog();
  }
  return session;
}

export { ort };
