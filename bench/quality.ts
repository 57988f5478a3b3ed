/**
 * `npm run bench:quality -- --reference <fp32 dump> <dump> [<dump> ...]`: how close quantised models stay to
 * float32 at full size. Each dump is `blip2-bot inspect --out` on the same image; prints cosine similarity and
 * max abs difference per tensor, and whether step-0 greedy picks the same token.
 */
import { readSafetensorsFile } from '../src/convert/safetensors.js';
import { benchArgs, table } from './util.js';

const USAGE = 'Usage: npm run bench:quality -- --reference fp32.safetensors int8.safetensors [more dumps]';
const { values, positionals } = benchArgs({ reference: { type: 'string' } }, USAGE, {
  allowPositionals: true,
});
if (!values.reference || positionals.length === 0) {
  console.error(USAGE);
  process.exit(2);
}

const NAMES = [
  'vision.last_hidden_state',
  'language_projection',
  't5.encoder.last_hidden_state',
  't5.logits.step0',
];

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

const reference = await readSafetensorsFile(values.reference);
const rows: string[][] = [];
for (const path of positionals) {
  const dump = await readSafetensorsFile(path);
  for (const name of NAMES) {
    const a = dump.get(name)?.data as Float32Array | undefined;
    const r = reference.get(name)?.data as Float32Array | undefined;
    if (!a || !r || a.length !== r.length)
      throw new Error(`${path}: ${name} missing or of another shape than the reference`);
    let dot = 0;
    let na = 0;
    let nr = 0;
    let max = 0;
    for (let i = 0; i < a.length; i++) {
      dot += a[i]! * r[i]!;
      na += a[i]! * a[i]!;
      nr += r[i]! * r[i]!;
      max = Math.max(max, Math.abs(a[i]! - r[i]!));
    }
    const extra =
      name === 't5.logits.step0' ? (argmax(a) === argmax(r) ? 'same top token' : 'top token differs') : '';
    rows.push([path, name, (dot / Math.sqrt(na * nr)).toFixed(5), max.toExponential(2), extra]);
  }
}
console.log(table(['dump', 'tensor', 'cosine vs fp32', 'max abs diff', ''], rows));
