import { describe, expect, it } from 'vitest';
import { concatChunks } from '../../src/util/bytes.js';

describe('concatChunks', () => {
  it('joins chunks in order, whatever their sizes and offsets', () => {
    const backing = Uint8Array.from({ length: 10 }, (_, i) => i);
    const joined = concatChunks([backing.subarray(7, 10), new Uint8Array(0), backing.subarray(0, 4)]);
    expect([...joined]).toEqual([7, 8, 9, 0, 1, 2, 3]);
  });

  it('hands back a single chunk as it is, and an empty array for none', () => {
    const only = Uint8Array.of(1, 2, 3);
    expect(concatChunks([only])).toBe(only);
    expect(concatChunks([]).byteLength).toBe(0);
  });
});
