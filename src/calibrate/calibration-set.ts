/**
 * What `--dtype auto` calibrates on: the photos bundled in `assets/calibration/` (CC0 / public domain, see the
 * README there) with a caption prompt and two questions, so every MatMul sees the activations of real pictures
 * and of the bot's real prompt styles.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PromptRequest } from '../engine/prompt.js';

export interface CalibrationImage {
  name: string;
  bytes: Uint8Array;
}

/** Caption, a question, and a second question: the prompt styles the bot sends. */
export const CALIBRATION_PROMPTS: readonly PromptRequest[] = [
  { task: 'caption' },
  { question: 'What is in the picture?' },
  { question: 'What colour is the largest object?' },
];

/** New tokens decoded per prompt (EOS ignored, so every prompt gives the decoder the same number of rows). */
export const CALIBRATION_NEW_TOKENS = 8;

/** `assets/calibration` of this installation, from `src/` or `dist/src/`. */
export function bundledCalibrationDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'assets', 'calibration');
    if (existsSync(join(candidate, 'README.md'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('the bundled calibration photos (assets/calibration) are missing from this installation');
}

export async function loadCalibrationImages(dir = bundledCalibrationDir()): Promise<CalibrationImage[]> {
  const names = (await readdir(dir)).filter((f) => /\.(jpe?g|png|webp)$/i.test(f)).sort();
  return Promise.all(names.map(async (name) => ({ name, bytes: await readFile(join(dir, name)) })));
}
