/**
 * Generation settings: task defaults (LAVIS), the user's overrides, HF's defaults for the rest, validated once so
 * the decoding loop can trust every value.
 */

import { randomInt } from 'node:crypto';
import type { GenerationOptions, Task } from '../api.js';
import { InputError } from '../errors.js';

/** The ids the decoding loop needs from the model config (`T5Config` has all three). */
export interface SpecialTokenIds {
  decoderStartTokenId: number;
  eosTokenId: number;
  padTokenId: number;
}

export interface ResolvedGenerationOptions extends SpecialTokenIds {
  numBeams: number;
  maxNewTokens: number;
  minNewTokens: number;
  lengthPenalty: number;
  earlyStopping: boolean | 'never';
  doSample: boolean;
  temperature: number;
  /** 0 disables top-k. */
  topK: number;
  /** 1 disables top-p. */
  topP: number;
  /** Always set: drawn at random when the caller gave none, so a sampled answer can be reproduced. */
  seed: number;
  repetitionPenalty: number;
  /** 0 disables the n-gram ban. */
  noRepeatNgramSize: number;
  ignoreEos: boolean;
}

type TaskDefaults = Pick<
  ResolvedGenerationOptions,
  'numBeams' | 'maxNewTokens' | 'minNewTokens' | 'lengthPenalty'
>;

/**
 * LAVIS's settings (caption: num_beams 5, max_len 30, min_len 8; VQA: num_beams 5, max_len 10, min_len 1,
 * length_penalty -1). LAVIS hands `min_len` to HF as `min_length`, which on T5 counts the decoder start token, so
 * min_len 8 forbids `</s>` among the first 7 new tokens (minNewTokens 7) and min_len 1 forbids nothing.
 */
export const TASK_GENERATION_DEFAULTS: Readonly<Record<Task, Readonly<TaskDefaults>>> = {
  caption: { numBeams: 5, maxNewTokens: 30, minNewTokens: 7, lengthPenalty: 1 },
  question: { numBeams: 5, maxNewTokens: 10, minNewTokens: 0, lengthPenalty: -1 },
};

/** HF GenerationConfig defaults for everything the task does not set (top_k 50 applies when sampling). */
const HF_DEFAULTS = {
  earlyStopping: false,
  doSample: false,
  temperature: 1,
  topK: 50,
  topP: 1,
  repetitionPenalty: 1,
  noRepeatNgramSize: 0,
  ignoreEos: false,
} as const;

/** Upper bounds that keep one request from holding the engine (and its memory) for long. */
export const GENERATION_LIMITS = { maxNumBeams: 32, maxNewTokens: 512 } as const;

const OPTION_NAMES: ReadonlySet<string> = new Set<keyof GenerationOptions>([
  'numBeams',
  'maxNewTokens',
  'minNewTokens',
  'lengthPenalty',
  'earlyStopping',
  'doSample',
  'temperature',
  'topK',
  'topP',
  'seed',
  'repetitionPenalty',
  'noRepeatNgramSize',
  'ignoreEos',
]);

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function wholeNumber(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InputError(`${name} must be a whole number from ${min} to ${max} (got ${describe(value)}).`);
  }
  return value;
}

function positiveNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InputError(`${name} must be a number above 0 (got ${describe(value)}).`);
  }
  return value;
}

function flag(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean')
    throw new InputError(`${name} must be true or false (got ${describe(value)}).`);
  return value;
}

function specialId(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    // A broken model config, not something the person asking can fix.
    throw new TypeError(`${name} must be a non-negative integer token id (got ${describe(value)})`);
  }
  return value;
}

/**
 * Task defaults, then `overrides` (unset fields keep the default), validated. Throws `InputError` with a message
 * a person can act on for an unknown option or a value out of range.
 */
export function resolveGenerationOptions(
  task: Task,
  overrides: GenerationOptions | undefined,
  special: SpecialTokenIds,
): ResolvedGenerationOptions {
  const taskDefaults = TASK_GENERATION_DEFAULTS[task];
  if (!taskDefaults) throw new InputError(`Unknown task ${describe(task)}: use "caption" or "question".`);
  const given: GenerationOptions = overrides ?? {};
  for (const key of Object.keys(given)) {
    if (!OPTION_NAMES.has(key)) {
      throw new InputError(
        `Unknown generation option "${key}". Known options: ${[...OPTION_NAMES].join(', ')}.`,
      );
    }
  }
  const pick = <K extends keyof GenerationOptions>(key: K, fallback: unknown): unknown =>
    given[key] === undefined ? fallback : given[key];

  const maxNewTokens = wholeNumber(
    'maxNewTokens',
    pick('maxNewTokens', taskDefaults.maxNewTokens),
    1,
    GENERATION_LIMITS.maxNewTokens,
  );
  let minNewTokens: number;
  if (given.minNewTokens === undefined) {
    // A default minimum must not contradict a smaller maximum the caller chose.
    minNewTokens = Math.min(taskDefaults.minNewTokens, maxNewTokens);
  } else {
    minNewTokens = wholeNumber('minNewTokens', given.minNewTokens, 0, GENERATION_LIMITS.maxNewTokens);
    if (minNewTokens > maxNewTokens) {
      throw new InputError(
        `minNewTokens (${minNewTokens}) must not be larger than maxNewTokens (${maxNewTokens}).`,
      );
    }
  }

  const lengthPenalty = pick('lengthPenalty', taskDefaults.lengthPenalty);
  if (typeof lengthPenalty !== 'number' || !Number.isFinite(lengthPenalty)) {
    throw new InputError(`lengthPenalty must be a number (got ${describe(lengthPenalty)}).`);
  }
  const earlyStopping = pick('earlyStopping', HF_DEFAULTS.earlyStopping);
  if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') {
    throw new InputError(`earlyStopping must be true, false or "never" (got ${describe(earlyStopping)}).`);
  }
  const topP = pick('topP', HF_DEFAULTS.topP);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
    throw new InputError(`topP must be above 0 and at most 1 (got ${describe(topP)}).`);
  }
  const seed =
    given.seed === undefined
      ? randomInt(0, 2 ** 32)
      : wholeNumber('seed', given.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);

  return {
    numBeams: wholeNumber(
      'numBeams',
      pick('numBeams', taskDefaults.numBeams),
      1,
      GENERATION_LIMITS.maxNumBeams,
    ),
    maxNewTokens,
    minNewTokens,
    lengthPenalty,
    earlyStopping,
    doSample: flag('doSample', pick('doSample', HF_DEFAULTS.doSample)),
    temperature: positiveNumber('temperature', pick('temperature', HF_DEFAULTS.temperature)),
    topK: wholeNumber('topK', pick('topK', HF_DEFAULTS.topK), 0, Number.MAX_SAFE_INTEGER),
    topP,
    seed,
    repetitionPenalty: positiveNumber(
      'repetitionPenalty',
      pick('repetitionPenalty', HF_DEFAULTS.repetitionPenalty),
    ),
    noRepeatNgramSize: wholeNumber(
      'noRepeatNgramSize',
      pick('noRepeatNgramSize', HF_DEFAULTS.noRepeatNgramSize),
      0,
      GENERATION_LIMITS.maxNewTokens,
    ),
    ignoreEos: flag('ignoreEos', pick('ignoreEos', HF_DEFAULTS.ignoreEos)),
    decoderStartTokenId: specialId('decoderStartTokenId', special.decoderStartTokenId),
    eosTokenId: specialId('eosTokenId', special.eosTokenId),
    padTokenId: specialId('padTokenId', special.padTokenId),
  };
}
