import { describe, it, expect, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import {
  CODEC_MAGIC,
  CODEC_VERSION,
  CodecError,
  assertSameSpecs,
  decodeWeights,
  encodeWeights,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  sha256Hex,
  type CodecErrorCode,
} from '../services/core/codec.js';
import { buildModel, getFlatWeights, modelSpec, referenceModelSpec, setFlatWeights, specSize, type TensorSpec } from '../services/core/model.js';
import { tf } from '../services/core/tf.js';
import { createRng } from '../datasets/rng.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const HEADER = 12;
const SUM = 32;

const specs: TensorSpec[] = [
  { name: 'a/kernel', shape: [3, 4] },
  { name: 'a/bias', shape: [4] },
  { name: 'b/kernel', shape: [4, 2, 1] },
];
const N = 12 + 4 + 8;

function values(n: number, seed = 1, scale = 2): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
}

function bytesOf(f: Float32Array): Buffer {
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
}

/** Recomputes the trailing SHA-256 so a deliberately patched payload passes the checksum. */
function reseal(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  createHash('sha256').update(out.subarray(0, out.length - SUM)).digest().copy(out, out.length - SUM);
  return out;
}

/** Builds a sealed weights blob from raw parts, for manifests the encoder would never write. */
function forge(manifest: unknown, data: Buffer, dtypeCode = 0): Buffer {
  const m = Buffer.from(typeof manifest === 'string' ? manifest : JSON.stringify(manifest), 'utf8');
  const head = Buffer.alloc(HEADER);
  head.write(CODEC_MAGIC, 0, 'latin1');
  head[4] = CODEC_VERSION;
  head[5] = dtypeCode;
  head.writeUInt32LE(m.length, 8);
  return reseal(Buffer.concat([head, m, data, Buffer.alloc(SUM)]));
}

function dataStart(buf: Buffer): number {
  return HEADER + buf.readUInt32LE(8);
}

function codecError(fn: () => unknown): CodecError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CodecError);
    return e as CodecError;
  }
  throw new Error('expected a CodecError, nothing was thrown');
}

function expectCodecError(fn: () => unknown, code: CodecErrorCode, message?: RegExp): void {
  const e = codecError(fn);
  expect(e.code).toBe(code);
  if (message) expect(e.message).toMatch(message);
}

describe('encodeWeights / decodeWeights: float32', () => {
  const flat = values(N);
  flat[3] = -0;
  flat[4] = 3.4e38;
  flat[5] = 1e-45; // float32 subnormal
  const buf = encodeWeights(specs, flat);

  it('round-trips bit for bit', () => {
    const out = decodeWeights(buf, specs);
    expect(out.dtype).toBe('float32');
    expect(out.specs).toEqual(specs);
    expect(bytesOf(out.flat).equals(bytesOf(flat))).toBe(true);
  });

  it('writes the documented layout with a SHA-256 over everything before it', () => {
    expect(buf.toString('latin1', 0, 4)).toBe('EFLW');
    expect(buf[4]).toBe(CODEC_VERSION);
    expect(buf[5]).toBe(0);
    expect(buf.readUInt16LE(6)).toBe(0);
    const m = buf.readUInt32LE(8);
    expect(JSON.parse(buf.toString('utf8', HEADER, HEADER + m))).toEqual({ format: 'EFLW', version: CODEC_VERSION, dtype: 'float32', tensors: specs });
    expect(buf.length).toBe(HEADER + m + 4 * N + SUM);
    expect(buf.readFloatLE(HEADER + m + 4 * 7)).toBe(flat[7]);
    const body = buf.subarray(0, buf.length - SUM);
    expect(buf.subarray(buf.length - SUM).equals(createHash('sha256').update(body).digest())).toBe(true);
    expect(decodeWeights(buf).checksum).toBe(sha256Hex(buf));
  });

  it('decodes without expected specs, and from a view at an offset into a larger buffer', () => {
    expect(decodeWeights(buf).specs).toEqual(specs);
    const host = new Uint8Array(buf.length + 7);
    host.set(buf, 3);
    const view = host.subarray(3, 3 + buf.length);
    expect(bytesOf(decodeWeights(view, specs).flat).equals(bytesOf(flat))).toBe(true);
  });

  it('is deterministic: the same weights give the same bytes and checksum', () => {
    expect(encodeWeights(specs, Float32Array.from(flat)).equals(buf)).toBe(true);
    const other = Float32Array.from(flat);
    other[0] = other[0]! + 1;
    expect(decodeWeights(encodeWeights(specs, other)).checksum).not.toBe(decodeWeights(buf).checksum);
  });
});

describe('encodeWeights / decodeWeights: float16', () => {
  const flat = values(N, 2, 4);
  flat[0] = 1e-6; // a half subnormal
  flat[1] = -70000 / 2; // large but in range
  const f32 = encodeWeights(specs, flat, 'float32');
  const f16 = encodeWeights(specs, flat, 'float16');

  it('takes two bytes per value: half the data of float32', () => {
    expect(f16[5]).toBe(1);
    expect(f32.length - f16.length).toBe(2 * N);
    expect(f16.length - HEADER - f16.readUInt32LE(8) - SUM).toBe(2 * N);
  });

  it('round-trips within half precision', () => {
    const out = decodeWeights(f16, specs);
    expect(out.dtype).toBe('float16');
    for (let i = 0; i < N; i++) {
      const x = flat[i]!;
      // relative error 2^-11 for normals; absolute 2^-25 for subnormals
      expect(Math.abs(out.flat[i]! - x), `#${i} ${x} -> ${out.flat[i]}`).toBeLessThanOrEqual(Math.max(Math.abs(x) * 2 ** -11, 2 ** -25));
      expect(out.flat[i]).toBe(float16BitsToFloat32(float32ToFloat16Bits(x)));
    }
    expect(out.flat.some((v, i) => v !== flat[i])).toBe(true); // it really is lossy
  });

  it('refuses values beyond float16 range when encoding, rather than writing bytes the decoder refuses', () => {
    const big = Float32Array.from(flat);
    big[9] = 70000;
    expectCodecError(() => encodeWeights(specs, big, 'float16'), 'non_finite', /#9.*70000.*float16/);
    // the same values are fine in float32
    expect(decodeWeights(encodeWeights(specs, big, 'float32')).flat[9]).toBe(70000);
  });
});

describe('decodeWeights rejects damaged or foreign bytes', () => {
  const flat = values(N, 3);
  const good = encodeWeights(specs, flat);

  it('a flipped byte anywhere after the header fields is a checksum_mismatch', () => {
    const ds = dataStart(good);
    for (const at of [8, HEADER + 2, ds, ds + 4 * N - 1, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] = bad[at]! ^ 0x01;
      expectCodecError(() => decodeWeights(bad), 'checksum_mismatch', /checksum/);
    }
  });

  it('truncated bytes fail', () => {
    expectCodecError(() => decodeWeights(good.subarray(0, good.length - 1)), 'checksum_mismatch');
    expectCodecError(() => decodeWeights(good.subarray(0, good.length - 4)), 'checksum_mismatch');
    expectCodecError(() => decodeWeights(good.subarray(0, 30)), 'malformed', /too short/);
    expectCodecError(() => decodeWeights(new Uint8Array(0)), 'malformed', /too short/);
  });

  it('bad magic, unknown version or dtype code are malformed', () => {
    const magic = Buffer.from(good);
    magic.write('PK\x03\x04', 0, 'latin1');
    expectCodecError(() => decodeWeights(magic), 'malformed', /bad magic/);
    const version = Buffer.from(good);
    version[4] = 2;
    expectCodecError(() => decodeWeights(reseal(version)), 'malformed', /version 2/);
    const dtype = Buffer.from(good);
    dtype[5] = 7;
    expectCodecError(() => decodeWeights(reseal(dtype)), 'malformed', /dtype code 7/);
  });

  it('a manifest that does not match the expected specs is a shape_mismatch', () => {
    const renamed = specs.map((s, i) => (i === 1 ? { ...s, name: 'a/beta' } : s));
    expectCodecError(() => decodeWeights(good, renamed), 'shape_mismatch', /tensor #1 is a\/bias \[4\], the model expects a\/beta \[4\]/);
    // same total size, different shapes
    const reshaped = specs.map((s, i) => (i === 0 ? { ...s, shape: [4, 3] } : s));
    expectCodecError(() => decodeWeights(good, reshaped), 'shape_mismatch', /tensor #0/);
    expectCodecError(() => decodeWeights(good, specs.slice(0, 2)), 'shape_mismatch', /3 tensors, the model has 2/);
    expectCodecError(() => decodeWeights(good, referenceModelSpec()), 'shape_mismatch');
    expect(() => assertSameSpecs(specs, specs.map((s) => ({ name: s.name, shape: [...s.shape] })))).not.toThrow();
  });

  it('NaN or Infinity in the data is non_finite, even with a valid checksum', () => {
    const ds = dataStart(good);
    for (const [bits, what] of [
      [0x7fc00000, 'NaN'],
      [0x7f800000, 'Infinity'],
      [0xff800000, '-Infinity'],
    ] as const) {
      const bad = Buffer.from(good);
      bad.writeUInt32LE(bits, ds + 4 * 5);
      expectCodecError(() => decodeWeights(reseal(bad), specs), 'non_finite', new RegExp(`#5 is ${what}`));
    }
    const half = encodeWeights(specs, flat, 'float16');
    const badHalf = Buffer.from(half);
    badHalf.writeUInt16LE(0x7c00, dataStart(half) + 2 * 2);
    expectCodecError(() => decodeWeights(reseal(badHalf)), 'non_finite', /#2 is Infinity/);
  });

  it('manifests the encoder would never write are malformed', () => {
    const data = bytesOf(values(4));
    const ok = { format: 'EFLW', version: 1, dtype: 'float32', tensors: [{ name: 'w', shape: [4] }] };
    expect([...decodeWeights(forge(ok, data)).flat]).toEqual([...values(4)]);
    expectCodecError(() => decodeWeights(forge('{not json', data)), 'malformed', /not valid JSON/);
    expectCodecError(() => decodeWeights(forge({ ...ok, tensors: [] }, data)), 'malformed', /no tensors/);
    expectCodecError(() => decodeWeights(forge({ ...ok, tensors: [{ name: 'w', shape: [2, -2] }] }, data)), 'malformed', /positive integers/);
    expectCodecError(() => decodeWeights(forge({ ...ok, tensors: [{ shape: [4] }] }, data)), 'malformed', /needs a name/);
    expectCodecError(() => decodeWeights(forge({ ...ok, tensors: [{ name: 'w', shape: [5] }] }, data)), 'malformed', /describes 5 float32 values but 16 data bytes follow/);
    const long = Buffer.from(forge(ok, data));
    long.writeUInt32LE(10_000, 8);
    expectCodecError(() => decodeWeights(reseal(long)), 'malformed', /runs past the end/);
  });
});

describe('encodeWeights refuses bad input', () => {
  it('NaN and Infinity are non_finite', () => {
    for (const v of [NaN, Infinity, -Infinity]) {
      const flat = values(N);
      flat[7] = v;
      expectCodecError(() => encodeWeights(specs, flat), 'non_finite', /#7/);
      expectCodecError(() => encodeWeights(specs, flat, 'float16'), 'non_finite', /#7/);
    }
  });

  it('a spec/length mismatch is a shape_mismatch', () => {
    expectCodecError(() => encodeWeights(specs, values(N - 1)), 'shape_mismatch', /describes 24 values but 23 were given/);
    expectCodecError(() => encodeWeights(specs, values(N + 1)), 'shape_mismatch');
    expectCodecError(() => encodeWeights([], values(1)), 'shape_mismatch');
  });
});

describe('the real model through the codec', () => {
  it('round-trips all 317,066 weights through setFlatWeights/getFlatWeights', () => {
    const source = buildModel(1);
    const target = buildModel(2);
    try {
      const spec = modelSpec(source);
      expect(specSize(spec)).toBe(317_066);
      const flat = getFlatWeights(source);
      expect(flat.length).toBe(317_066);
      const bytes = encodeWeights(spec, flat);
      const decoded = decodeWeights(bytes, referenceModelSpec());
      expect(bytesOf(getFlatWeights(target)).equals(bytesOf(flat))).toBe(false);
      setFlatWeights(target, decoded.flat);
      expect(bytesOf(getFlatWeights(target)).equals(bytesOf(flat))).toBe(true);

      const half = decodeWeights(encodeWeights(spec, flat, 'float16'), spec);
      expect(bytes.length - encodeWeights(spec, flat, 'float16').length).toBe(2 * 317_066);
      let worst = 0;
      for (let i = 0; i < flat.length; i++) worst = Math.max(worst, Math.abs(half.flat[i]! - flat[i]!) / Math.max(Math.abs(flat[i]!), 2 ** -14));
      expect(worst).toBeLessThanOrEqual(2 ** -11);
    } finally {
      source.dispose();
      target.dispose();
    }
  });
});
