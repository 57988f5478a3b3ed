/**
 * The tiny golden fixture laid out as a real BLIP-2 repo on the Hub: the weights split into two safetensors shards
 * with a `model.safetensors.index.json` (as Salesforce/blip2-flan-t5-xl has them), the tokenizer and processor
 * files, and files `pull` must not download (a pickled `.bin` copy, an ONNX export in a folder, the goldens).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensorsFile, writeSafetensors } from '../../src/convert/safetensors.js';
import { TINY_FIXTURE_DIR } from '../helpers/shared.js';

export const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
export const NEEDED = [
  'config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'spiece.model',
  'model.safetensors.index.json',
  ...SHARDS,
];
export const NOT_NEEDED = ['golden.json', 'README.md', 'pytorch_model.bin', 'onnx/vision_encoder.onnx'];

export async function shardedFixtureFiles(): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const f of NEEDED.slice(0, 6)) files[f] = readFileSync(join(TINY_FIXTURE_DIR, f));
  files['golden.json'] = readFileSync(join(TINY_FIXTURE_DIR, 'golden.json'));
  files['README.md'] = Buffer.from('---\nlicense: mit\n---\n# blip2-tiny\n');
  files['pytorch_model.bin'] = Buffer.alloc(300_000, 7);
  files['onnx/vision_encoder.onnx'] = Buffer.alloc(1000, 1);

  const tensors = [...(await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'model.safetensors')))];
  // Split where half the bytes are, so both shards are big enough to cut, stall and resume in.
  const totalBytes = tensors.reduce((n, [, t]) => n + t.data.byteLength, 0);
  let half = 0;
  for (let acc = 0; half < tensors.length && acc < totalBytes / 2; half++)
    acc += tensors[half]![1].data.byteLength;
  const work = mkdtempSync(join(tmpdir(), 'blip2-shards-'));
  const weightMap: Record<string, string> = {};
  try {
    for (const [i, part] of [tensors.slice(0, half), tensors.slice(half)].entries()) {
      const shard = SHARDS[i]!;
      await writeSafetensors(
        join(work, shard),
        part.map(([name, t]) => ({
          name,
          dtype: 'F32' as const,
          shape: t.shape,
          data: t.data as Float32Array,
        })),
        { format: 'pt' },
      );
      for (const [name] of part) weightMap[name] = shard;
      files[shard] = readFileSync(join(work, shard));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const totalSize = SHARDS.reduce((n, s) => n + files[s]!.length, 0);
  files['model.safetensors.index.json'] = Buffer.from(
    JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2),
  );
  return files;
}
