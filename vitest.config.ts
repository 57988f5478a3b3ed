import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A temp dir per run; the run fails if a test or a spawned process leaves anything in it.
    globalSetup: ['test/helpers/temp-guard.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // onnxruntime already uses every core; running test files in parallel only adds contention.
    fileParallelism: false,
    reporters: ['default'],
  },
});
