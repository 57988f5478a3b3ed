/**
 * A tiny model whose vision encoder is slow enough to see (hundreds of ms on one thread, like a full-size vision
 * run on many): the demo config with a 448-pixel input and a wider, deeper ViT. Converted once per test file with
 * the real converter into a temp dir the caller removes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { TINY_DEMO_CONFIG, writeSyntheticCheckpoint } from '../../src/convert/synthetic.js';

export async function writeSlowVisionModel(): Promise<{ dir: string; remove(): Promise<void> }> {
  const work = await mkdtemp(join(tmpdir(), 'blip2-slow-vision-'));
  const config = structuredClone(TINY_DEMO_CONFIG) as unknown as Record<string, Record<string, unknown>>;
  config.vision_config = {
    ...config.vision_config,
    hidden_size: 256,
    intermediate_size: 1024,
    num_hidden_layers: 6,
    image_size: 448,
  };
  config.qformer_config = { ...config.qformer_config, encoder_hidden_size: 256 };
  await writeSyntheticCheckpoint(join(work, 'source'), { config, seed: 7 });
  await convertCheckpoint(join(work, 'source'), join(work, 'model'), { dtype: 'fp32', force: true });
  await rm(join(work, 'source'), { recursive: true, force: true });
  return { dir: join(work, 'model'), remove: () => rm(work, { recursive: true, force: true }) };
}
