import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // onnxruntime already uses every core; running test files in parallel only adds contention.
    fileParallelism: false,
    reporters: ['default'],
  },
});
