import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gpt2TokenizerJson, loadTokenizer, TokenizerLoadError } from '../../src/engine/tokenizer.js';
import { HAS_OPT_TOKENIZER_ASSET, OPT_TOKENIZER_ASSET_DIR, SHARED_SKIP_REASON } from '../helpers/shared.js';

interface Expected {
  cases: { name: string; text: string; ids: number[]; decoded: string }[];
  decode_cases: { name: string; ids: number[]; decoded: string }[];
}

describe.skipIf(!HAS_OPT_TOKENIZER_ASSET)(
  'OPT tokenizer (GPT-2 byte-level BPE) against HF GPT2Tokenizer',
  async () => {
    const expected = HAS_OPT_TOKENIZER_ASSET
      ? (JSON.parse(readFileSync(join(OPT_TOKENIZER_ASSET_DIR, 'expected.json'), 'utf8')) as Expected)
      : { cases: [], decode_cases: [] };
    const tok = HAS_OPT_TOKENIZER_ASSET ? await loadTokenizer(OPT_TOKENIZER_ASSET_DIR, 'opt') : undefined;
    const work = mkdtempSync(join(tmpdir(), 'blip2-opt-tok-'));
    afterAll(() => rmSync(work, { recursive: true, force: true }));

    it('has every case of expected.json', () => {
      expect(expected.cases.length).toBe(41);
      expect(expected.decode_cases.length).toBe(5);
    });

    for (const c of expected.cases) {
      it(`encodes and decodes "${c.name}" as HF does`, () => {
        expect(tok!.encode(c.text)).toEqual(c.ids);
        expect(tok!.countTokens(c.text)).toBe(c.ids.length);
        expect(tok!.decode(c.ids)).toBe(c.decoded);
      });
    }
    for (const c of expected.decode_cases) {
      it(`decodes "${c.name}" as HF does (special tokens skipped, spaces cleaned up)`, () => {
        expect(tok!.decode(c.ids)).toBe(c.decoded);
      });
    }

    it('prefers a tokenizer.json when the model dir has one, and says what is missing when neither is there', async () => {
      const empty = join(work, 'empty');
      await expect(loadTokenizer(empty, 'opt')).rejects.toThrow(TokenizerLoadError);
      await expect(loadTokenizer(empty, 'opt')).rejects.toThrow(/vocab\.json and merges\.txt/);
      // A dir with only a tokenizer.json (as real OPT checkpoints ship it) encodes the same.
      const dir = join(work, 'json');
      mkdirSync(dir);
      const vocab = JSON.parse(readFileSync(join(OPT_TOKENIZER_ASSET_DIR, 'vocab.json'), 'utf8'));
      const merges = readFileSync(join(OPT_TOKENIZER_ASSET_DIR, 'merges.txt'), 'utf8');
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson(vocab, merges)));
      const fromJson = await loadTokenizer(dir, 'opt');
      for (const c of expected.cases.slice(0, 8)) expect(fromJson.encode(c.text), c.name).toEqual(c.ids);
    });
  },
);

if (!HAS_OPT_TOKENIZER_ASSET) console.warn(`[opt-tokenizer] ${SHARED_SKIP_REASON}`);
