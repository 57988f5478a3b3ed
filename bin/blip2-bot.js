#!/usr/bin/env node
// In a checkout the TypeScript sources run through tsx, so no build step can go stale;
// a published package runs the compiled output.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const source = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  await import(new URL('../dist/src/cli/main.js', import.meta.url).href);
}
