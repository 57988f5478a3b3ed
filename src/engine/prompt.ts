/**
 * LAVIS prompt formats for BLIP-2 (FlanT5 and OPT use the same templates) and fitting a conversation into the
 * model's token budget.
 *
 * - caption: the prompt as given, or the model's default prefix (FlanT5 "", OPT "a photo of", as LAVIS's OPT
 *   caption models are prompted);
 * - question: `Question: {q} Answer:`;
 * - follow-up: each earlier turn as `Question: {q} Answer: {a}.`, joined by spaces, then ` Question: {q} Answer:`
 *   (LAVIS's multi-turn template).
 */

import type { LanguageModelKind } from '../model/config.js';
import type { Task, Turn } from './api.js';
import { InputError } from './errors.js';

/** What differs between the model kinds' prompts. */
export interface PromptStyle {
  /** Used when a caption is asked for without a prompt. */
  captionPrompt: string;
}

export const PROMPT_STYLES: Readonly<Record<LanguageModelKind, Readonly<PromptStyle>>> = {
  t5: { captionPrompt: '' },
  opt: { captionPrompt: 'a photo of' },
};

export function promptStyleFor(kind: LanguageModelKind): PromptStyle {
  return PROMPT_STYLES[kind];
}

export interface PromptRequest {
  /** Used only when neither `prompt` nor `question` is given: 'caption' (the default) or 'question'. */
  task?: Task;
  /** A caption prompt, used as it is (trimmed). */
  prompt?: string;
  question?: string;
  /** Earlier turns about the same image, oldest first (question prompts only). */
  history?: readonly Turn[];
}

export interface BuiltPrompt {
  text: string;
  /** The task whose generation defaults apply. */
  task: Task;
  /** How many of the oldest history turns did not fit. */
  droppedTurns: number;
}

/** One earlier exchange in LAVIS's multi-turn template. */
export function formatTurn(turn: Turn): string {
  return `Question: ${turn.question.trim()} Answer: ${turn.answer.trim()}.`;
}

/** The question prompt with the given earlier turns (oldest first). */
export function formatQuestion(question: string, history: readonly Turn[] = []): string {
  const current = `Question: ${question.trim()} Answer:`;
  return history.length === 0 ? current : `${history.map(formatTurn).join(' ')} ${current}`;
}

/**
 * The prompt text for a request, dropping the oldest history turns until it fits.
 *
 * @param countTokens how many tokens a text takes, counted as the model will see it (`</s>` or bos included).
 * @param budget tokens the text may take: the encoder limit minus the query tokens (512 − 32 for BLIP-2
 *   FlanT5; OPT: its positions less the query tokens and the answer).
 * @param style the model kind's defaults (the caption prompt).
 * @throws InputError for an empty question, both a prompt and a question, or a question/prompt that does not fit
 *   on its own.
 */
export function buildPrompt(
  request: PromptRequest,
  countTokens: (text: string) => number,
  budget: number,
  style: PromptStyle = PROMPT_STYLES.t5,
): BuiltPrompt {
  const { prompt, question } = request;
  if (prompt !== undefined && question !== undefined) {
    throw new InputError('Please give either a prompt or a question, not both.');
  }
  if (prompt !== undefined || (question === undefined && (request.task ?? 'caption') === 'caption')) {
    const text = (prompt ?? style.captionPrompt).trim();
    const tokens = countTokens(text);
    if (tokens > budget) throw tooLong('prompt', tokens, budget);
    return { text, task: 'caption', droppedTurns: 0 };
  }

  const asked = (question ?? '').trim();
  if (asked === '') throw new InputError('Please ask a question: the question was empty.');
  const history = request.history ?? [];
  const alone = formatQuestion(asked);
  const aloneTokens = countTokens(alone);
  if (aloneTokens > budget) throw tooLong('question', aloneTokens, budget);
  if (history.length === 0 || countTokens(formatQuestion(asked, history)) <= budget) {
    return { text: formatQuestion(asked, history), task: 'question', droppedTurns: 0 };
  }
  // Fewer turns never make the text longer, so search for the fewest dropped turns that fit: O(log turns)
  // tokenizer calls instead of one per turn. `low` drops too few, `high` is known to fit.
  let low = 0;
  let high = history.length;
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    if (countTokens(formatQuestion(asked, history.slice(mid))) <= budget) high = mid;
    else low = mid;
  }
  return { text: formatQuestion(asked, history.slice(high)), task: 'question', droppedTurns: high };
}

function tooLong(what: 'question' | 'prompt', tokens: number, budget: number): InputError {
  return new InputError(
    `Your ${what} is too long: it takes ${tokens} tokens and at most ${budget} fit. Please shorten it and try again.`,
  );
}
