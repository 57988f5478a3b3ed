/**
 * The tokenizer of a BLIP-2 model dir through the pure-JS `@huggingface/tokenizers` (the tokenizer core of
 * transformers.js): FlanT5's from its Hugging Face `tokenizer.json`; OPT's GPT-2 byte-level BPE from
 * `tokenizer.json` or, as HF's slow GPT2Tokenizer reads it, `vocab.json` + `merges.txt`.
 *
 * `encode` follows HF's T5Tokenizer: the text is tokenized without special tokens and `</s>` is appended unless
 * the ids already end with it (T5Tokenizer's `_add_eos_if_not_present`). Doing that here, instead of trusting the
 * file's post-processor, keeps the rule the same for tokenizer.json files with or without a TemplateProcessing
 * step and never doubles `</s>`.
 *
 * OPT follows HF's GPT2Tokenizer with `add_bos_token: true`: bos `</s>` (2) first, nothing appended; only the
 * special tokens tokenizer_config.json names (`</s>`, `<pad>`) are split out of the text.
 */

import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserFacingError } from '../errors.js';

/** Which HF tokenizer's rules apply: T5Tokenizer (append `</s>`) or OPT's GPT2Tokenizer (prepend bos). */
export type TokenizerStyle = 't5' | 'opt';

export interface Blip2Tokenizer {
  /** Token ids for `text` as HF returns them: FlanT5 with `</s>` appended, OPT with bos `</s>` prepended. */
  encode(text: string): number[];
  /**
   * Text for `ids`, special tokens (`<pad>`, `</s>`, `<unk>`, sentinels) skipped, with HF's
   * clean_up_tokenization_spaces when tokenizer_config.json asks for it. Ids past the vocabulary (FlanT5 pads its
   * embedding to 32128) decode as `<unk>`, so they are skipped too.
   */
  decode(ids: readonly number[]): string;
  /** `encode(text).length`: the prompt length the model sees, `</s>` (bos for OPT) included. */
  countTokens(text: string): number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** Tokens in the vocabulary, added tokens included (32100 for FlanT5; the model's embedding may be larger). */
  readonly vocabSize: number;
}

export class TokenizerLoadError extends UserFacingError {
  override name = 'TokenizerLoadError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('tokenizer', message, options);
  }
}

type Json = Record<string, unknown>;

async function readJson(path: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerLoadError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error('expected a JSON object');
    }
    return parsed as Json;
  } catch (err) {
    throw new TokenizerLoadError(`${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** tokenizer_config.json names special tokens either as strings or as AddedToken objects ({content: ...}). */
function tokenName(value: unknown, fallback: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as Json).content === 'string') {
    return (value as Json).content as string;
  }
  return fallback;
}

/**
 * A `tokenizer.json` equivalent of HF's slow GPT2Tokenizer over `vocab.json` and `merges.txt`: GPT-2's byte-level
 * pre-tokenizer regex without a prefix space, BPE by merge rank, the byte-level decoder, and as added (special)
 * tokens only those tokenizer_config.json names.
 */
export function gpt2TokenizerJson(vocab: Json, mergesText: string, tokenizerConfig: Json = {}): Json {
  const merges = mergesText
    .split('\n')
    .filter((line, i) => line.trim() !== '' && !(i === 0 && line.startsWith('#version')));
  const specials = new Set(
    ['bos_token', 'eos_token', 'unk_token', 'pad_token'].map((role) =>
      tokenName(tokenizerConfig[role], role === 'pad_token' ? '<pad>' : '</s>'),
    ),
  );
  const addedTokens = [...specials]
    .filter((content) => typeof vocab[content] === 'number')
    .map((content) => ({
      id: vocab[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: true,
      special: true,
    }));
  const addPrefixSpace = tokenizerConfig.add_prefix_space === true;
  return {
    version: '1.0',
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: 'ByteLevel',
      add_prefix_space: addPrefixSpace,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** Builds a tokenizer from parsed `tokenizer.json` (and `tokenizer_config.json`, when there is one). */
export function createTokenizer(
  tokenizerJson: Json,
  tokenizerConfig: Json = {},
  style: TokenizerStyle = 't5',
): Blip2Tokenizer {
  if (typeof tokenizerJson.model !== 'object' || tokenizerJson.model === null) {
    throw new TokenizerLoadError(
      'tokenizer.json has no "model" section; is it a Hugging Face tokenizer.json?',
    );
  }
  let inner: Tokenizer;
  try {
    inner = new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (err) {
    throw new TokenizerLoadError(`cannot build the tokenizer: ${(err as Error).message}`, { cause: err });
  }
  const idOf = (role: string, name: string): number => {
    const id = inner.token_to_id(name);
    if (id === undefined) {
      throw new TokenizerLoadError(`tokenizer.json has no ${role} token ${JSON.stringify(name)}`);
    }
    return id;
  };
  const eosTokenId = idOf('end-of-sequence', tokenName(tokenizerConfig.eos_token, '</s>'));
  const padTokenId = idOf('padding', tokenName(tokenizerConfig.pad_token, '<pad>'));
  const vocabSize = inner.get_vocab(true).size;
  const bosTokenId =
    style === 'opt' ? idOf('beginning-of-sequence', tokenName(tokenizerConfig.bos_token, '</s>')) : -1;

  const encode = (text: string): number[] => {
    if (typeof text !== 'string') throw new TypeError('encode: expected a string');
    const ids = inner.encode(text, { add_special_tokens: false }).ids;
    if (style === 'opt') return [bosTokenId, ...ids];
    if (ids[ids.length - 1] !== eosTokenId) ids.push(eosTokenId);
    return ids;
  };
  return {
    encode,
    // The library refuses an empty list; a stream that has produced nothing yet decodes to ''.
    decode: (ids) => (ids.length === 0 ? '' : inner.decode(Array.from(ids), { skip_special_tokens: true })),
    countTokens: (text) => encode(text).length,
    eosTokenId,
    padTokenId,
    vocabSize,
  };
}

/** OPT's tokenizer: `tokenizer.json` when the checkpoint has one, else `vocab.json` + `merges.txt`. */
async function loadGpt2Tokenizer(dir: string, config: Json): Promise<Blip2Tokenizer> {
  const tokenizerJson = await readJson(join(dir, 'tokenizer.json'));
  if (tokenizerJson) return createTokenizer(tokenizerJson, config, 'opt');
  const vocab = await readJson(join(dir, 'vocab.json'));
  let merges: string | undefined;
  try {
    merges = await readFile(join(dir, 'merges.txt'), 'utf8');
  } catch {
    merges = undefined;
  }
  if (!vocab || merges === undefined) {
    throw new TokenizerLoadError(
      `no tokenizer.json, nor vocab.json and merges.txt, in ${dir}: copy the OPT tokenizer files from the model’s Hugging Face checkpoint.`,
    );
  }
  return createTokenizer(gpt2TokenizerJson(vocab, merges, config), config, 'opt');
}

/**
 * Loads the model dir's tokenizer: `tokenizer.json` (+ `tokenizer_config.json` if present), or for OPT also
 * `vocab.json` + `merges.txt`. Throws TokenizerLoadError with what to do when the files are missing.
 */
export async function loadTokenizer(dir: string, style: TokenizerStyle = 't5'): Promise<Blip2Tokenizer> {
  if (style === 'opt')
    return loadGpt2Tokenizer(dir, (await readJson(join(dir, 'tokenizer_config.json'))) ?? {});
  const path = join(dir, 'tokenizer.json');
  const tokenizerJson = await readJson(path);
  if (!tokenizerJson) {
    const onlySentencePiece = await exists(join(dir, 'spiece.model'));
    throw new TokenizerLoadError(
      `no tokenizer.json in ${dir}` +
        (onlySentencePiece
          ? ': only spiece.model is there, and this runtime reads the Hugging Face tokenizer.json. Write one with ' +
            'transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir).'
          : '. Copy tokenizer.json (and tokenizer_config.json) from the model’s Hugging Face checkpoint.'),
    );
  }
  const config = await readJson(join(dir, 'tokenizer_config.json'));
  return createTokenizer(tokenizerJson, config ?? {});
}
