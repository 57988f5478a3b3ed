import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * `../shared` beside the checkout holds the golden fixtures and reference assets. A user's clone does not have
 * it: tests that need it skip with this reason instead of failing.
 */
export const SHARED_DIR = process.env.BLIP2_SHARED_DIR ?? resolve(ROOT, '..', 'shared');
export const HAS_SHARED = existsSync(join(SHARED_DIR, 'fixtures', 'blip2-tiny', 'golden.safetensors'));
export const SHARED_SKIP_REASON = `../shared (golden fixtures) not found at ${SHARED_DIR}; skipping`;

export const TINY_FIXTURE_DIR = join(SHARED_DIR, 'fixtures', 'blip2-tiny');
export const IMAGES_DIR = join(SHARED_DIR, 'assets', 'images');
export const TOKENIZER_ASSET_DIR = join(SHARED_DIR, 'assets', 'flan-t5-tokenizer');

if (!HAS_SHARED && !process.env.BLIP2_SHARED_NOTICE_SHOWN) {
  process.env.BLIP2_SHARED_NOTICE_SHOWN = '1';
  console.warn(`[tests] ${SHARED_SKIP_REASON}`);
}

/** The BLIP-2 OPT fixture (`NOTES-opt.md`) and the OPT tokenizer cases, checked separately: older copies lack them. */
export const OPT_FIXTURE_DIR = join(SHARED_DIR, 'fixtures', 'blip2-opt-tiny');
export const HAS_OPT_FIXTURE = existsSync(join(OPT_FIXTURE_DIR, 'golden.safetensors'));
export const OPT_TOKENIZER_ASSET_DIR = join(SHARED_DIR, 'assets', 'opt-tokenizer');
export const HAS_OPT_TOKENIZER_ASSET = existsSync(join(OPT_TOKENIZER_ASSET_DIR, 'expected.json'));
export const OPT_SKIP_REASON = `../shared/fixtures/blip2-opt-tiny not found under ${SHARED_DIR}; skipping`;
