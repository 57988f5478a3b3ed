import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  f32ToBf16Bits,
  f32ToF16Bits,
  InvalidHeaderError,
  MissingTensorError,
  NoCheckpointError,
  readSafetensorsFile,
  readSafetensorsHeader,
  SafetensorsCheckpoint,
  ShapeMismatchError,
  safetensorsFileSize,
  type TensorChunk,
  TruncatedFileError,
  UnsupportedDtypeError,
  writeSafetensors,
} from '../../src/convert/safetensors.js';
import { HAS_SHARED, ROOT, SHARED_SKIP_REASON, TINY_FIXTURE_DIR } from '../helpers/shared.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'blip2-safetensors-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let dirCounter = 0;
async function freshDir(): Promise<string> {
  const dir = join(tmp, `d${dirCounter++}`);
  await mkdir(dir);
  return dir;
}

/** A file with a hand-made header, for the corrupt cases the writer would never produce. */
async function writeRaw(
  path: string,
  header: unknown,
  data: Uint8Array,
  lengthOverride?: bigint,
): Promise<void> {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  await writeFile(path, Buffer.concat([len, json, data]));
}

function expectCheckpointError(err: unknown, cls: abstract new (...args: never[]) => CheckpointError): Error {
  expect(err).toBeInstanceOf(cls);
  expect(err).toBeInstanceOf(CheckpointError);
  return err as Error;
}

async function catchError(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

describe.skipIf(!HAS_SHARED)(`the tiny HF fixture${HAS_SHARED ? '' : ` (${SHARED_SKIP_REASON})`}`, () => {
  it('reads every tensor with the shape its header gives', async () => {
    const header = await readSafetensorsHeader(join(TINY_FIXTURE_DIR, 'model.safetensors'));
    expect(header.metadata).toEqual({ format: 'pt' });
    const ckpt = await SafetensorsCheckpoint.open(TINY_FIXTURE_DIR);
    try {
      expect(ckpt.names().sort()).toEqual(header.tensors.map((t) => t.name).sort());
      expect(ckpt.names()).toHaveLength(131);
      for (const t of header.tensors) {
        const values = await ckpt.read(t.name, t.shape);
        expect(values.length).toBe(t.shape.reduce((a, b) => a * b, 1));
        expect(values.every((x) => Number.isFinite(x))).toBe(true);
        expect(ckpt.info(t.name)).toMatchObject({
          dtype: 'F32',
          shape: t.shape,
          byteLength: values.length * 4,
        });
      }
      expect(ckpt.unusedNames()).toEqual([]);
      // The fixture keeps tied copies of the shared embedding (NOTES.md): same bytes, different offsets.
      const shared = await ckpt.read('language_model.shared.weight');
      const copy = await ckpt.read('language_model.encoder.embed_tokens.weight');
      expect(Buffer.from(copy.buffer).equals(Buffer.from(shared.buffer))).toBe(true);
      expect(ckpt.info('language_model.encoder.embed_tokens.weight').byteOffset).not.toBe(
        ckpt.info('language_model.shared.weight').byteOffset,
      );
      expect(ckpt.checksum()).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await ckpt.close();
    }
  });

  it('reads the golden outputs with their dtypes (F32, I64, U8)', async () => {
    const golden = await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'golden.safetensors'));
    expect(golden.size).toBe(76);
    const pixels = golden.get('pixel_values.0')!;
    expect(pixels.dtype).toBe('F32');
    expect(pixels.shape).toEqual([1, 3, 224, 224]);
    expect(pixels.data).toBeInstanceOf(Float32Array);
    const greedy = golden.get('generate.greedy.0')!;
    expect(greedy.data).toBeInstanceOf(BigInt64Array);
    const goldenJson = JSON.parse(await readFile(join(TINY_FIXTURE_DIR, 'golden.json'), 'utf8'));
    expect(Array.from(greedy.data as BigInt64Array, Number)).toEqual(goldenJson.results.greedy[0]);
    const u8 = await readSafetensorsFile(join(TINY_FIXTURE_DIR, 'golden_pixels_u8.safetensors'));
    const resized = u8.get('image.resized_rgb_u8.0')!;
    expect(resized.data).toBeInstanceOf(Uint8Array);
    expect(resized.data.length).toBe(224 * 224 * 3);
  });
});

describe('writer round trip', () => {
  it('writes every dtype and reads it back bit for bit', async () => {
    const dir = await freshDir();
    const path = join(dir, 'all.safetensors');
    const f32 = Float32Array.from([1.5, -2.25, 3e-8, 1e30, -0, 7]);
    const tensors = [
      { name: 'f32', dtype: 'F32' as const, shape: [2, 3], data: f32 },
      { name: 'f64', dtype: 'F64' as const, shape: [2], data: Float64Array.from([Math.PI, -1e300]) },
      { name: 'i64', dtype: 'I64' as const, shape: [3], data: BigInt64Array.from([-1n, 2n ** 62n, 0n]) },
      { name: 'i32', dtype: 'I32' as const, shape: [1, 2], data: Int32Array.from([-7, 2 ** 31 - 1]) },
      { name: 'i16', dtype: 'I16' as const, shape: [2], data: Int16Array.from([-300, 300]) },
      { name: 'i8', dtype: 'I8' as const, shape: [2], data: Int8Array.from([-128, 127]) },
      { name: 'u8', dtype: 'U8' as const, shape: [4], data: Uint8Array.from([0, 1, 254, 255]) },
      { name: 'bool', dtype: 'BOOL' as const, shape: [2], data: Uint8Array.from([1, 0]) },
      { name: 'empty', dtype: 'F32' as const, shape: [0, 4], data: new Float32Array(0) },
      { name: 'scalar', dtype: 'F32' as const, shape: [], data: Float32Array.from([42]) },
    ];
    const bytes = await writeSafetensors(path, tensors, { format: 'pt', note: 'test' });
    expect(bytes).toBe(safetensorsFileSize(tensors, { format: 'pt', note: 'test' }));
    const header = await readSafetensorsHeader(path);
    expect(header.metadata).toEqual({ format: 'pt', note: 'test' });
    expect(header.dataStart % 8).toBe(0);
    expect(header.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    const back = await readSafetensorsFile(path);
    for (const t of tensors) {
      const got = back.get(t.name)!;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect(got.data).toEqual(t.data);
    }
    expect(Object.is(back.get('f32')!.data[4], -0)).toBe(true);
    // No temporary file is left behind.
    expect(await readdir(dir)).toEqual(['all.safetensors']);
  });

  it('produces lazy tensors only when their turn comes, from arrays, chunk iterables and async iterables', async () => {
    const dir = await freshDir();
    const path = join(dir, 'lazy.safetensors');
    const produced: string[] = [];
    const progress: number[] = [];
    async function* asyncChunks(): AsyncGenerator<TensorChunk> {
      produced.push('c');
      yield Float32Array.from([5, 6]);
      yield Float32Array.from([7]);
    }
    function* syncChunks(): Generator<TensorChunk> {
      produced.push('b');
      yield BigInt64Array.from([1n]);
      yield BigInt64Array.from([2n, 3n]);
    }
    async function* entries() {
      yield {
        name: 'a',
        dtype: 'F32' as const,
        shape: [2],
        data: () => {
          produced.push('a');
          return Float32Array.from([1, 2]);
        },
      };
      yield { name: 'b', dtype: 'I64' as const, shape: [3], data: syncChunks };
      yield { name: 'c', dtype: 'F32' as const, shape: [3], data: asyncChunks };
    }
    await writeSafetensors(path, entries(), undefined, {
      onProgress: (p) => {
        progress.push(p.bytesWritten);
        expect(p.count).toBe(3);
        expect(p.totalBytes).toBeGreaterThanOrEqual(p.bytesWritten);
      },
    });
    expect(produced).toEqual(['a', 'b', 'c']);
    expect(progress).toHaveLength(5);
    expect([...progress].sort((x, y) => x - y)).toEqual(progress);
    const back = await readSafetensorsFile(path);
    expect(back.get('a')!.data).toEqual(Float32Array.from([1, 2]));
    expect(back.get('b')!.data).toEqual(BigInt64Array.from([1n, 2n, 3n]));
    expect(back.get('c')!.data).toEqual(Float32Array.from([5, 6, 7]));
  });

  it('refuses data that does not fit the shape or dtype, and leaves no file behind', async () => {
    const dir = await freshDir();
    const path = join(dir, 'bad.safetensors');
    const short = writeSafetensors(path, [
      { name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) },
    ]);
    await expect(short).rejects.toThrow(/"x".*8 bytes.*needs 12/);
    const long = writeSafetensors(path, [{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(2) }]);
    await expect(long).rejects.toThrow(/longer than its shape/);
    const wrongType = writeSafetensors(path, [
      { name: 'x', dtype: 'F32', shape: [1], data: new Float64Array(1) },
    ]);
    await expect(wrongType).rejects.toThrow(/F32 data must be Float32Array/);
    const dup = writeSafetensors(path, [
      { name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      { name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
    ]);
    await expect(dup).rejects.toThrow(/repeated/);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('half-precision conversion', () => {
  it('converts F16 and BF16 bit patterns to the exact float32 values', async () => {
    const dir = await freshDir();
    const f16Bits = Uint16Array.from([
      0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x3555, 0x8000, 0x7c00, 0xfc00, 0x7e00,
    ]);
    const f16Values = [
      1,
      -2,
      65504,
      2 ** -24,
      1023 * 2 ** -24,
      0.333251953125,
      -0,
      Infinity,
      -Infinity,
      Number.NaN,
    ];
    const bf16Bits = Uint16Array.from([0x3f80, 0xc040, 0x4049, 0x0001, 0x7f7f, 0x7f80, 0xff80, 0x8000]);
    const bf16Values = [1, -3, 3.140625, 2 ** -133, 3.3895313892515355e38, Infinity, -Infinity, -0];
    await writeSafetensors(join(dir, 'model.safetensors'), [
      { name: 'h', dtype: 'F16', shape: [f16Bits.length], data: f16Bits },
      { name: 'b', dtype: 'BF16', shape: [2, 4], data: bf16Bits },
    ]);
    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      expect(Array.from(await ckpt.read('h'))).toEqual(f16Values);
      expect(Object.is((await ckpt.read('h'))[6], -0)).toBe(true);
      expect(Array.from(await ckpt.read('b', [2, 4]))).toEqual(bf16Values);
      expect(ckpt.info('h')).toMatchObject({ dtype: 'F16', byteLength: 20 });
    } finally {
      await ckpt.close();
    }
  });

  it('rounds float32 to F16 and BF16 to nearest even when writing', () => {
    const f16 = f32ToF16Bits([
      1,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65504,
      65519,
      65520,
      -1e-8,
      2 ** -24,
      3 * 2 ** -26,
      Number.NaN,
    ]);
    expect(Array.from(f16, (x) => x.toString(16))).toEqual([
      '3c00',
      '3c00',
      '3c02',
      '7bff',
      '7bff',
      '7c00',
      '8000',
      '1',
      '1',
      '7e00',
    ]);
    const bf16 = f32ToBf16Bits([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -3, Number.NaN, 3.4e38]);
    expect(Array.from(bf16, (x) => x.toString(16))).toEqual(['3f80', '3f80', '3f82', 'c040', '7fc0', '7f80']);
  });

  it('writes F16 from float32 values and reads them back', async () => {
    const dir = await freshDir();
    const values = Float32Array.from([0.5, -1.25, 1024, 0.1]);
    await writeSafetensors(join(dir, 'x.safetensors'), [
      { name: 'h', dtype: 'F16', shape: [4], data: values },
      { name: 'b', dtype: 'BF16', shape: [4], data: values },
    ]);
    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      const h = await ckpt.read('h');
      expect(Array.from(h.subarray(0, 3))).toEqual([0.5, -1.25, 1024]);
      expect(h[3]).toBeCloseTo(0.1, 3);
      const b = await ckpt.read('b');
      expect(b[3]).toBeCloseTo(0.1, 2);
    } finally {
      await ckpt.close();
    }
  });
});

describe('sharded checkpoints', () => {
  async function writeSharded(dir: string, weightMap?: Record<string, string>): Promise<void> {
    await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [
      { name: 'a.weight', dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
      { name: 'b.bias', dtype: 'F32', shape: [2], data: Float32Array.from([5, 6]) },
    ]);
    await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [
      { name: 'c.weight', dtype: 'BF16', shape: [3], data: Float32Array.from([7, 8, 9]) },
    ]);
    const map = weightMap ?? {
      'a.weight': 'model-00001-of-00002.safetensors',
      'b.bias': 'model-00001-of-00002.safetensors',
      'c.weight': 'model-00002-of-00002.safetensors',
    };
    await writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: 30 }, weight_map: map }),
    );
  }

  it('reads tensors from every shard listed in the index', async () => {
    const dir = await freshDir();
    await writeSharded(dir);
    await writeFile(join(dir, 'config.json'), '{"model_type":"blip-2"}');
    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      expect(ckpt.names().sort()).toEqual(['a.weight', 'b.bias', 'c.weight']);
      expect(ckpt.files()).toHaveLength(2);
      expect(ckpt.info('c.weight').file).toBe(join(dir, 'model-00002-of-00002.safetensors'));
      expect(ckpt.info('a.weight').file).toBe(join(dir, 'model-00001-of-00002.safetensors'));
      expect(Array.from(await ckpt.read('c.weight', [3]))).toEqual([7, 8, 9]);
      expect(Array.from(await ckpt.read('a.weight', [2, 2]))).toEqual([1, 2, 3, 4]);
      expect(ckpt.unusedNames()).toEqual(['b.bias']);
      expect(ckpt.dataBytes()).toBe(16 + 8 + 6);

      // The checksum covers config.json and the headers, and is stable for the same files.
      const before = ckpt.checksum();
      const again = await SafetensorsCheckpoint.open(dir);
      expect(again.checksum()).toBe(before);
      await again.close();
      await writeFile(join(dir, 'config.json'), '{"model_type":"blip-2","x":1}');
      const changed = await SafetensorsCheckpoint.open(dir);
      expect(changed.checksum()).not.toBe(before);
      await changed.close();
    } finally {
      await ckpt.close();
    }
  });

  it('rejects an index that places a tensor in the wrong shard or lists a tensor no shard has', async () => {
    const wrong = await freshDir();
    await writeSharded(wrong, {
      'a.weight': 'model-00002-of-00002.safetensors',
      'b.bias': 'model-00001-of-00002.safetensors',
      'c.weight': 'model-00002-of-00002.safetensors',
    });
    const err1 = await catchError(SafetensorsCheckpoint.open(wrong));
    expect(expectCheckpointError(err1, InvalidHeaderError).message).toMatch(/places tensor "a.weight"/);

    const missing = await freshDir();
    await writeSharded(missing, {
      'a.weight': 'model-00001-of-00002.safetensors',
      'c.weight': 'model-00002-of-00002.safetensors',
      'd.weight': 'model-00002-of-00002.safetensors',
    });
    const err2 = await catchError(SafetensorsCheckpoint.open(missing));
    expect(expectCheckpointError(err2, MissingTensorError).message).toMatch(/"d.weight"/);

    const absentShard = await freshDir();
    await writeSharded(absentShard, { 'a.weight': 'model-00003-of-00003.safetensors' });
    const err3 = await catchError(SafetensorsCheckpoint.open(absentShard));
    expect(expectCheckpointError(err3, CheckpointError).message).toMatch(
      /model-00003-of-00003.*does not exist/,
    );
  });
});

describe('errors a user can act on', () => {
  async function smallCheckpoint(): Promise<string> {
    const dir = await freshDir();
    await writeSafetensors(join(dir, 'model.safetensors'), [
      {
        name: 'vision_model.post_layernorm.weight',
        dtype: 'F32',
        shape: [4],
        data: Float32Array.from([1, 2, 3, 4]),
      },
      { name: 'language_projection.weight', dtype: 'F32', shape: [2, 3], data: new Float32Array(6) },
      { name: 'ints', dtype: 'I8', shape: [2], data: Int8Array.from([1, 2]) },
    ]);
    return dir;
  }

  it('missing tensor: names it and suggests the checkpoint is not a BLIP-2 T5 one', async () => {
    const ckpt = await SafetensorsCheckpoint.open(await smallCheckpoint());
    try {
      expect(ckpt.has('query_tokens')).toBe(false);
      const err = await catchError(ckpt.read('query_tokens'));
      const msg = expectCheckpointError(err, MissingTensorError).message;
      expect(msg).toContain('"query_tokens"');
      expect(msg).toContain('Blip2ForConditionalGeneration');
      expect(msg).toContain('model.safetensors');
      expect((err as MissingTensorError).tensor).toBe('query_tokens');
      expect(() => ckpt.info('query_tokens')).toThrow(MissingTensorError);
    } finally {
      await ckpt.close();
    }
  });

  it('wrong shape: gives both shapes and the file', async () => {
    const ckpt = await SafetensorsCheckpoint.open(await smallCheckpoint());
    try {
      const err = await catchError(ckpt.read('language_projection.weight', [3, 2]));
      const msg = expectCheckpointError(err, ShapeMismatchError).message;
      expect(msg).toContain('"language_projection.weight"');
      expect(msg).toContain('[2, 3]');
      expect(msg).toContain('[3, 2]');
      expect(msg).toContain('model.safetensors');
      // A failed read does not count as using the tensor.
      expect(ckpt.unusedNames()).toContain('language_projection.weight');
    } finally {
      await ckpt.close();
    }
  });

  it('unsupported dtype: names it and the supported ones', async () => {
    const ckpt = await SafetensorsCheckpoint.open(await smallCheckpoint());
    try {
      const err = await catchError(ckpt.read('ints'));
      const msg = expectCheckpointError(err, UnsupportedDtypeError).message;
      expect(msg).toMatch(/"ints".*dtype I8.*F32, F16, BF16/);
    } finally {
      await ckpt.close();
    }
  });

  it('unusedNames lists what was never read', async () => {
    const ckpt = await SafetensorsCheckpoint.open(await smallCheckpoint());
    try {
      expect(ckpt.unusedNames()).toEqual([
        'vision_model.post_layernorm.weight',
        'language_projection.weight',
        'ints',
      ]);
      expect(Array.from(await ckpt.read('vision_model.post_layernorm.weight', [4]))).toEqual([1, 2, 3, 4]);
      expect(ckpt.unusedNames()).toEqual(['language_projection.weight', 'ints']);
    } finally {
      await ckpt.close();
    }
  });

  it('truncated file: detected at open from the header, naming the file', async () => {
    const dir = await smallCheckpoint();
    const path = join(dir, 'model.safetensors');
    const size = (await readFile(path)).length;
    await truncate(path, size - 3);
    const err = await catchError(SafetensorsCheckpoint.open(dir));
    const msg = expectCheckpointError(err, TruncatedFileError).message;
    expect(msg).toContain(path);
    expect(msg).toContain(`${size - 3} bytes`);
    expect(msg).toMatch(/interrupted/);
  });

  it('truncated after opening: the read fails instead of returning short data', async () => {
    const dir = await smallCheckpoint();
    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      await truncate(join(dir, 'model.safetensors'), 100);
      const err = await catchError(ckpt.read('language_projection.weight'));
      expect(expectCheckpointError(err, TruncatedFileError).message).toContain('language_projection.weight');
    } finally {
      await ckpt.close();
    }
  });

  it('absurd or broken headers', async () => {
    const cases: { header: unknown; data?: Uint8Array; length?: bigint; match: RegExp }[] = [
      { header: '{}', length: 2n ** 40n, match: /header length 1099511627776 bytes is absurd/ },
      { header: '{}', length: 5000n, match: /runs past the end/ },
      {
        header: '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]',
        data: new Uint8Array(4),
        match: /not valid JSON/,
      },
      { header: '[1, 2]', match: /not a JSON object/ },
      {
        header: {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        data: new Uint8Array(12),
        match: /"b" overlaps/,
      },
      {
        header: { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } },
        data: new Uint8Array(8),
        match: /gap before tensor "a"/,
      },
      {
        header: { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } },
        data: new Uint8Array(8),
        match: /"a" \(F32 \[3\]\) should take 12 bytes but its offsets span 8/,
      },
      { header: { a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, match: /invalid data_offsets/ },
      { header: { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, match: /invalid shape/ },
    ];
    for (const c of cases) {
      const dir = await freshDir();
      const path = join(dir, 'model.safetensors');
      await writeRaw(path, c.header, c.data ?? new Uint8Array(), c.length);
      const err = await catchError(SafetensorsCheckpoint.open(dir));
      const msg = expectCheckpointError(err, InvalidHeaderError).message;
      expect(msg).toContain(path);
      expect(msg).toMatch(c.match);
    }
    const tiny = await freshDir();
    await writeFile(join(tiny, 'model.safetensors'), Buffer.from([1, 2, 3]));
    expectCheckpointError(await catchError(SafetensorsCheckpoint.open(tiny)), InvalidHeaderError);
  });

  it('a header whose data runs past the file end is a truncated file', async () => {
    const dir = await freshDir();
    await writeRaw(
      join(dir, 'model.safetensors'),
      { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } },
      new Uint8Array(10),
    );
    expectCheckpointError(await catchError(SafetensorsCheckpoint.open(dir)), TruncatedFileError);
  });

  it('no safetensors file, a missing dir, or several candidates', async () => {
    const empty = await freshDir();
    await writeFile(join(empty, 'pytorch_model.bin'), 'x');
    const err = await catchError(SafetensorsCheckpoint.open(empty));
    expect(expectCheckpointError(err, NoCheckpointError).message).toMatch(
      /no safetensors checkpoint in .*\.bin/,
    );
    expectCheckpointError(
      await catchError(SafetensorsCheckpoint.open(join(empty, 'nope'))),
      NoCheckpointError,
    );

    const several = await freshDir();
    for (const f of ['a.safetensors', 'b.safetensors']) {
      await writeSafetensors(join(several, f), [
        { name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      ]);
    }
    const err2 = await catchError(SafetensorsCheckpoint.open(several));
    expect(expectCheckpointError(err2, CheckpointError).message).toMatch(/several .safetensors files/);

    // A single file with another name is accepted.
    const single = await freshDir();
    await writeSafetensors(join(single, 'weights.safetensors'), [
      { name: 'x', dtype: 'F32', shape: [1], data: Float32Array.from([3]) },
    ]);
    const ckpt = await SafetensorsCheckpoint.open(single);
    expect(Array.from(await ckpt.read('x'))).toEqual([3]);
    await ckpt.close();
    await expect(ckpt.read('x')).rejects.toThrow(/closed/);
  });
});

describe('module layout (item 21)', () => {
  it('safetensors.ts only gathers the reader and writer pieces, each named for what it does', () => {
    const barrel = readFileSync(join(ROOT, 'src', 'convert', 'safetensors.ts'), 'utf8')
      .replace(/\/\*\*[\s\S]*?\*\//g, '')
      .trim();
    expect(barrel.split(/;\s*/).filter((s) => s.trim() && !/^export [\s\S]+ from '/.test(s.trim()))).toEqual(
      [],
    );
    for (const piece of ['format', 'errors', 'header', 'checkpoint', 'small-file', 'write']) {
      expect(existsSync(join(ROOT, 'src', 'convert', 'safetensors', `${piece}.ts`)), piece).toBe(true);
    }
  });
});
