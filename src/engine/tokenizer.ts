/**
 * The FlanT5 tokenizer of a BLIP-2 model dir, from its Hugging Face `tokenizer.json`, through the pure-JS
 * `@huggingface/tokenizers` (the tokenizer core of transformers.js).
 *
 * `encode` follows HF's T5Tokenizer: the text is tokenized without special tokens and `</s>` is appended unless
 * the ids already end with it (T5Tokenizer's `_add_eos_if_not_present`). Doing that here, instead of trusting the
 * file's post-processor, keeps the rule the same for tokenizer.json files with or without a TemplateProcessing
 * step and never doubles `</s>`.
 */

import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserFacingError } from '../errors.js';

export interface Blip2Tokenizer {
  /** Token ids for `text` with `</s>` appended, as T5Tokenizer returns them. */
  encode(text: string): number[];
  /**
   * Text for `ids`, special tokens (`<pad>`, `</s>`, `<unk>`, sentinels) skipped, with HF's
   * clean_up_tokenization_spaces when tokenizer_config.json asks for it. Ids past the vocabulary (FlanT5 pads its
   * embedding to 32128) decode as `<unk>`, so they are skipped too.
   */
  decode(ids: readonly number[]): string;
  /** `encode(text).length`: the prompt length the encoder sees, `</s>` included. */
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

/** Builds a tokenizer from parsed `tokenizer.json` (and `tokenizer_config.json`, when there is one). */
export function createTokenizer(tokenizerJson: Json, tokenizerConfig: Json = {}): Blip2Tokenizer {
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

  const encode = (text: string): number[] => {
    if (typeof text !== 'string') throw new TypeError('encode: expected a string');
    const ids = inner.encode(text, { add_special_tokens: false }).ids;
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

/**
 * Loads `<dir>/tokenizer.json` (+ `tokenizer_config.json` if present). Throws TokenizerLoadError with what to
 * do when the file is missing.
 */
export async function loadTokenizer(dir: string): Promise<Blip2Tokenizer> {
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
