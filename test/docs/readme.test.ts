/** What the README tells a new user to run refers to files the repository has. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/shared.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

describe('README examples', () => {
  it('every picture an example passes with --image exists, with its licence in examples/README.md', () => {
    const images = [...readme.matchAll(/--image\s+(\S+\.(?:png|jpe?g|webp|gif))/g)].map((m) => m[1]!);
    expect(images.length).toBeGreaterThan(0);
    const licences = readFileSync(join(ROOT, 'examples', 'README.md'), 'utf8');
    for (const image of new Set(images)) {
      expect(existsSync(join(ROOT, image)), image).toBe(true);
      const name = image.split('/').pop()!;
      expect(licences, name).toMatch(
        new RegExp(`\`${name.replace('.', '\\.')}\`.*\\|\\s*(CC0|Public domain)`),
      );
    }
  });
});
