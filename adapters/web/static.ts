/**
 * The playground's three files, read into memory once at start. Requests are answered from this map only, so no
 * request path ever reaches the file system.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export interface StaticFile {
  type: string;
  body: Buffer;
}

const FILES: ReadonlyArray<[route: string, file: string, type: string]> = [
  ['/', 'index.html', 'text/html; charset=utf-8'],
  ['/app.js', 'app.js', 'text/javascript; charset=utf-8'],
  ['/style.css', 'style.css', 'text/css; charset=utf-8'],
];

/** Beside this module in a checkout; a compiled package (dist/adapters/web) finds them in the package root. */
function staticDir(): string {
  const here = fileURLToPath(new URL('./static/', import.meta.url));
  if (existsSync(here)) return here;
  return fileURLToPath(new URL('../../../adapters/web/static/', import.meta.url));
}

export async function loadStaticFiles(): Promise<Map<string, StaticFile>> {
  const dir = staticDir();
  const files = new Map<string, StaticFile>();
  for (const [route, file, type] of FILES) files.set(route, { type, body: await readFile(`${dir}${file}`) });
  return files;
}
