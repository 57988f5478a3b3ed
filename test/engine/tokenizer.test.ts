import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { createTokenizer, loadTokenizer, TokenizerLoadError } from '../../src/engine/tokenizer.js';
import { HAS_SHARED, ROOT, TINY_FIXTURE_DIR, TOKENIZER_ASSET_DIR } from '../helpers/shared.js';

const BUNDLED = join(ROOT, 'assets', 'flan-t5-tokenizer');

interface Expected {
  special_ids: Record<string, number>;
  cases: { name: string; text: string; ids: number[] }[];
  decode_cases: { ids: number[]; skip_special_tokens_text: string }[];
}

describe('loadTokenizer on the bundled assets/flan-t5-tokenizer (no fixtures needed)', async () => {
  const tok = await loadTokenizer(BUNDLED);

  it('encodes like T5Tokenizer, with one </s> at the end', () => {
    expect(tok.encode('translate English to German: The house is wonderful.')).toEqual([
      13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1,
    ]);
    expect(tok.encode('Question: what is in the picture? Answer:')).toEqual([
      11860, 10, 125, 19, 16, 8, 1554, 58, 11801, 10, 1,
    ]);
    expect(tok.encode('')).toEqual([1]);
    // T5Tokenizer does not add a second </s> when the text already ends with one.
    expect(tok.encode('a photo of</s>')).toEqual([3, 9, 1202, 13, 1]);
    expect(tok.countTokens('a photo of')).toBe(5);
  });

  it('decodes without special tokens', () => {
    expect(tok.decode([0, 3, 9, 1202, 13, 3, 9, 1782, 16, 8, 2983, 1])).toBe('a photo of a dog in the snow');
    expect(tok.decode([0, 4273, 1, 0, 0])).toBe('yes');
    expect(tok.decode([])).toBe('');
    // Ids in the padded part of the embedding (32100..32127) have no token: skipped like <unk>.
    expect(tok.decode([0, 3, 9, 32110, 1202, 1])).toBe('a photo');
    expect(tok.decode(tok.encode('two cats lying on a pink couch.'))).toBe('two cats lying on a pink couch.');
  });

  it('knows its special ids', () => {
    expect(tok.eosTokenId).toBe(1);
    expect(tok.padTokenId).toBe(0);
    expect(tok.vocabSize).toBe(32100);
  });
});

describe('loadTokenizer errors', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'blip2-tok-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('says tokenizer.json is missing, and what to do', async () => {
    const dir = tempDir();
    await expect(loadTokenizer(dir)).rejects.toThrow(TokenizerLoadError);
    await expect(loadTokenizer(dir)).rejects.toThrow(/no tokenizer\.json in .*Copy tokenizer\.json/);
    writeFileSync(join(dir, 'spiece.model'), 'x');
    await expect(loadTokenizer(dir)).rejects.toThrow(/only spiece\.model .*save_pretrained/);
  });

  it('reports a broken tokenizer.json', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json is not valid JSON/);
    writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    await expect(loadTokenizer(dir)).rejects.toThrow(/no "model" section/);
  });

  it('works without tokenizer_config.json', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'tokenizer.json'), readFileSync(join(BUNDLED, 'tokenizer.json')));
    const tok = await loadTokenizer(dir);
    expect(tok.encode('a photo of')).toEqual([3, 9, 1202, 13, 1]);
    expect(tok.decode([0, 150, 1])).toBe('no');
  });
});

describe.skipIf(!HAS_SHARED)('tokenizer parity with expected.json (../shared)', () => {
  const expected = () =>
    JSON.parse(readFileSync(join(TOKENIZER_ASSET_DIR, 'expected.json'), 'utf8')) as Expected;

  it('reproduces all 37 encodes and 7 decodes from the asset dir and the fixture model dir', async () => {
    const e = expected();
    expect(e.cases.length).toBe(37);
    expect(e.decode_cases.length).toBe(7);
    for (const dir of [TOKENIZER_ASSET_DIR, TINY_FIXTURE_DIR]) {
      const tok = await loadTokenizer(dir);
      for (const c of e.cases) {
        expect(tok.encode(c.text), `${c.name}: ${JSON.stringify(c.text)}`).toEqual(c.ids);
        expect(tok.countTokens(c.text)).toBe(c.ids.length);
      }
      for (const c of e.decode_cases) expect(tok.decode(c.ids)).toBe(c.skip_special_tokens_text);
      expect(tok.eosTokenId).toBe(e.special_ids.eos);
      expect(tok.padTokenId).toBe(e.special_ids.pad);
    }
  });

  it("agrees with the file's own post-processor (TemplateProcessing [$A, </s>]) on every case", () => {
    // The library's post-processor also appends </s>; ours must not add a second one on top of it.
    const json = JSON.parse(readFileSync(join(TOKENIZER_ASSET_DIR, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(readFileSync(join(TOKENIZER_ASSET_DIR, 'tokenizer_config.json'), 'utf8'));
    const library = new Tokenizer(json, config);
    const ours = createTokenizer(json, config);
    for (const c of expected().cases) expect(ours.encode(c.text)).toEqual(library.encode(c.text).ids);
  });
});
