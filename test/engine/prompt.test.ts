import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import type { Turn } from '../../src/engine/api.js';
import { InputError } from '../../src/engine/errors.js';
import { buildPrompt, formatQuestion, formatTurn } from '../../src/engine/prompt.js';
import { HAS_SHARED, TINY_FIXTURE_DIR, TOKENIZER_ASSET_DIR } from '../helpers/shared.js';

/** Whitespace-separated words plus one for `</s>`: enough to test the budget logic exactly. */
const countWords = (text: string) => text.split(/\s+/).filter(Boolean).length + 1;

const turns = (n: number): Turn[] =>
  Array.from({ length: n }, (_, i) => ({ question: `question ${i}?`, answer: `answer number ${i}` }));

describe('prompt formats (LAVIS)', () => {
  it('caption: empty, or the given prefix trimmed', () => {
    expect(buildPrompt({}, countWords, 100)).toEqual({ text: '', task: 'caption', droppedTurns: 0 });
    expect(buildPrompt({ task: 'caption' }, countWords, 100).text).toBe('');
    expect(buildPrompt({ prompt: '  a photo of \n' }, countWords, 100)).toEqual({
      text: 'a photo of',
      task: 'caption',
      droppedTurns: 0,
    });
  });

  it('question, and multi-turn with each earlier answer closed by a period', () => {
    expect(buildPrompt({ question: 'what is this?' }, countWords, 100)).toEqual({
      text: 'Question: what is this? Answer:',
      task: 'question',
      droppedTurns: 0,
    });
    const text = buildPrompt(
      {
        question: 'and the dog?',
        history: [
          { question: 'what is this?', answer: 'a cat' },
          { question: 'what colour?', answer: 'black' },
        ],
      },
      countWords,
      100,
    ).text;
    expect(text).toBe(
      'Question: what is this? Answer: a cat. Question: what colour? Answer: black. Question: and the dog? Answer:',
    );
    expect(formatTurn({ question: ' q ', answer: ' a ' })).toBe('Question: q Answer: a.');
    expect(formatQuestion('q')).toBe('Question: q Answer:');
  });

  it('trims the question but keeps everything inside it', () => {
    expect(buildPrompt({ question: '  what is   this?\n' }, countWords, 100).text).toBe(
      'Question: what is   this? Answer:',
    );
  });

  it('rejects an empty question, a question task without one, and both prompt and question', () => {
    for (const request of [{ question: '' }, { question: ' \n\t ' }, { task: 'question' as const }]) {
      expect(() => buildPrompt(request, countWords, 100)).toThrow(InputError);
      expect(() => buildPrompt(request, countWords, 100)).toThrow(/Please ask a question/);
    }
    expect(() => buildPrompt({ prompt: 'a photo of', question: 'what?' }, countWords, 100)).toThrow(
      /either a prompt or a question, not both/,
    );
  });

  it('caption prompts ignore history', () => {
    expect(buildPrompt({ prompt: 'a photo of', history: turns(3) }, countWords, 100)).toEqual({
      text: 'a photo of',
      task: 'caption',
      droppedTurns: 0,
    });
  });
});

describe('fitting the encoder budget', () => {
  it('drops exactly the oldest turns that do not fit, never the question', () => {
    const history = turns(10);
    const question = 'what is left?';
    for (let budget = countWords(formatQuestion(question)); budget <= 120; budget++) {
      // Linear reference: the fewest oldest turns to drop so that the rest fit.
      let expected = 0;
      while (countWords(formatQuestion(question, history.slice(expected))) > budget) expected++;
      const built = buildPrompt({ question, history }, countWords, budget);
      expect(built.droppedTurns).toBe(expected);
      expect(built.text).toBe(formatQuestion(question, history.slice(expected)));
      expect(countWords(built.text)).toBeLessThanOrEqual(budget);
      expect(built.text.endsWith(`Question: ${question} Answer:`)).toBe(true);
    }
  });

  it('keeps the whole history when it fits', () => {
    const built = buildPrompt({ question: 'q?', history: turns(3) }, countWords, 1000);
    expect(built.droppedTurns).toBe(0);
    expect(built.text.startsWith('Question: question 0? Answer: answer number 0.')).toBe(true);
  });

  it('a question that does not fit on its own is refused politely', () => {
    const question = 'word '.repeat(50).trim();
    const call = () => buildPrompt({ question, history: turns(2) }, countWords, 20);
    expect(call).toThrow(InputError);
    expect(call).toThrow(
      /^Your question is too long: it takes 53 tokens and at most 20 fit\. Please shorten it/,
    );
    expect(() => buildPrompt({ prompt: 'a b c d e' }, countWords, 3)).toThrow(/^Your prompt is too long/);
  });

  it('needs only a logarithmic number of token counts for a long history', () => {
    let calls = 0;
    const counting = (text: string) => {
      calls++;
      return countWords(text);
    };
    const built = buildPrompt({ question: 'q?', history: turns(1000) }, counting, 200);
    expect(built.droppedTurns).toBeGreaterThan(900);
    expect(calls).toBeLessThanOrEqual(14);
  });
});

describe.skipIf(!HAS_SHARED)('with the real FlanT5 tokenizer and the golden prompts', () => {
  const tokenizer = () => {
    const read = (name: string) => JSON.parse(readFileSync(join(TOKENIZER_ASSET_DIR, name), 'utf8'));
    return new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
  };
  const golden = () => JSON.parse(readFileSync(join(TINY_FIXTURE_DIR, 'golden.json'), 'utf8')).prompts;

  it('reproduces golden.json prompts (text and ids)', () => {
    const tok = tokenizer();
    const count = (text: string) => tok.encode(text).ids.length;
    const { prompt, two_turn } = golden();
    const single = buildPrompt({ question: 'what is in the picture?' }, count, 480);
    expect(single.text).toBe(prompt.text);
    expect(tok.encode(single.text).ids).toEqual(prompt.input_ids);
    const twoTurn = buildPrompt(
      {
        question: 'what color is the couch?',
        history: [{ question: 'what is in the picture?', answer: 'two cats lying on a pink couch' }],
      },
      count,
      480,
    );
    expect(twoTurn.text).toBe(two_turn.text);
    expect(tok.encode(twoTurn.text).ids).toEqual(two_turn.input_ids);
  });

  it('fits a long conversation into 512 − 32 query tokens', () => {
    const tok = tokenizer();
    const count = (text: string) => tok.encode(text).ids.length;
    const history = Array.from({ length: 60 }, (_, i) => ({
      question: `what is the object number ${i} on the left side of the table?`,
      answer: `it is a small red ceramic cup with a chipped handle, item ${i}`,
    }));
    const question = 'and what is on the right?';
    const built = buildPrompt({ question, history }, count, 512 - 32);
    expect(built.droppedTurns).toBeGreaterThan(0);
    expect(built.droppedTurns).toBeLessThan(60);
    expect(count(built.text)).toBeLessThanOrEqual(480);
    expect(count(formatQuestion(question, history.slice(built.droppedTurns - 1)))).toBeGreaterThan(480);
  });
});
