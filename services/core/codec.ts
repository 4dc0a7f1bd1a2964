import { createHash } from 'node:crypto';
import type { TensorSpec } from './model.js';

/**
 * The one binary format for model weights, used for global versions and client
 * updates alike:
 *
 *   "EFLW" | u8 version | u8 dtype (0 f32, 1 f16) | u16 reserved | u32 manifest length
 *   | manifest JSON (utf-8) | tensor data, little-endian, in manifest order | SHA-256 of all before it
 *
 * The checksum covers the header and manifest too, so a flipped byte anywhere is caught.
 */
export const CODEC_MAGIC = 'EFLW';
export const CODEC_VERSION = 1;
export type WireDtype = 'float32' | 'float16';

const HEADER_BYTES = 12;
const CHECKSUM_BYTES = 32;

export type CodecErrorCode = 'malformed' | 'checksum_mismatch' | 'shape_mismatch' | 'non_finite';

export class CodecError extends Error {
  constructor(readonly code: CodecErrorCode, message: string) {
    super(message);
  }
}

export interface Manifest {
  format: typeof CODEC_MAGIC;
  version: number;
  dtype: WireDtype;
  tensors: TensorSpec[];
}

export interface DecodedWeights {
  specs: TensorSpec[];
  flat: Float32Array;
  dtype: WireDtype;
  checksum: string;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function encodeWeights(specs: readonly TensorSpec[], flat: Float32Array, dtype: WireDtype = 'float32'): Buffer {
  const expected = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  if (expected !== flat.length) throw new CodecError('shape_mismatch', `manifest describes ${expected} values but ${flat.length} were given`);
  assertFinite(flat);
  const manifest: Manifest = { format: CODEC_MAGIC, version: CODEC_VERSION, dtype, tensors: specs.map((s) => ({ name: s.name, shape: [...s.shape] })) };
  const manifestBytes = Buffer.from(JSON.stringify(manifest), 'utf8');
  const bytesPer = dtype === 'float32' ? 4 : 2;
  const body = Buffer.alloc(HEADER_BYTES + manifestBytes.length + flat.length * bytesPer + CHECKSUM_BYTES);
  body.write(CODEC_MAGIC, 0, 'latin1');
  body.writeUInt8(CODEC_VERSION, 4);
  body.writeUInt8(dtype === 'float32' ? 0 : 1, 5);
  body.writeUInt32LE(manifestBytes.length, 8);
  manifestBytes.copy(body, HEADER_BYTES);
  let offset = HEADER_BYTES + manifestBytes.length;
  if (dtype === 'float32') {
    for (let i = 0; i < flat.length; i++, offset += 4) body.writeFloatLE(flat[i]!, offset);
  } else {
    for (let i = 0; i < flat.length; i++, offset += 2) {
      const half = float32ToFloat16Bits(flat[i]!);
      // The decoder refuses Infinity, so a value beyond half's range must fail here, not on arrival.
      if ((half & 0x7c00) === 0x7c00) throw new CodecError('non_finite', `weight #${i} is ${flat[i]}, beyond float16's range (±65504)`);
      body.writeUInt16LE(half, offset);
    }
  }
  createHash('sha256').update(body.subarray(0, offset)).digest().copy(body, offset);
  return body;
}

/** Parses and verifies bytes; with `expected`, also insists the tensors match that model exactly. */
export function decodeWeights(bytes: Uint8Array, expected?: readonly TensorSpec[]): DecodedWeights {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < HEADER_BYTES + CHECKSUM_BYTES) throw new CodecError('malformed', `weights are ${buf.length} bytes, too short for the header`);
  if (buf.toString('latin1', 0, 4) !== CODEC_MAGIC) throw new CodecError('malformed', 'not edgefl weights: bad magic (expected "EFLW")');
  const version = buf.readUInt8(4);
  if (version !== CODEC_VERSION) throw new CodecError('malformed', `unsupported weights format version ${version}`);
  const dtypeCode = buf.readUInt8(5);
  if (dtypeCode > 1) throw new CodecError('malformed', `unknown dtype code ${dtypeCode}`);
  const dtype: WireDtype = dtypeCode === 0 ? 'float32' : 'float16';
  const payloadEnd = buf.length - CHECKSUM_BYTES;
  const actual = createHash('sha256').update(buf.subarray(0, payloadEnd)).digest();
  if (!actual.equals(buf.subarray(payloadEnd))) throw new CodecError('checksum_mismatch', 'weights checksum does not match their contents (corrupted or truncated)');

  const manifestLength = buf.readUInt32LE(8);
  if (HEADER_BYTES + manifestLength > payloadEnd) throw new CodecError('malformed', 'manifest length runs past the end of the data');
  let manifest: Manifest;
  try {
    manifest = JSON.parse(buf.toString('utf8', HEADER_BYTES, HEADER_BYTES + manifestLength)) as Manifest;
  } catch {
    throw new CodecError('malformed', 'manifest is not valid JSON');
  }
  const specs = validateSpecs(manifest.tensors);
  const count = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  const bytesPer = dtype === 'float32' ? 4 : 2;
  const dataStart = HEADER_BYTES + manifestLength;
  if (payloadEnd - dataStart !== count * bytesPer) {
    throw new CodecError('malformed', `manifest describes ${count} ${dtype} values but ${payloadEnd - dataStart} data bytes follow`);
  }
  if (expected) assertSameSpecs(specs, expected);
  const flat = new Float32Array(count);
  if (dtype === 'float32') {
    for (let i = 0, o = dataStart; i < count; i++, o += 4) flat[i] = buf.readFloatLE(o);
  } else {
    for (let i = 0, o = dataStart; i < count; i++, o += 2) flat[i] = float16BitsToFloat32(buf.readUInt16LE(o));
  }
  assertFinite(flat);
  return { specs, flat, dtype, checksum: sha256Hex(buf) };
}

/** What the store keeps for one set of weights: the codec bytes, their SHA-256 and the tensor manifest. */
export interface StoredWeights {
  bytes: Buffer;
  checksum: string;
  manifest: { tensors: TensorSpec[] };
}

/** The one way to produce weights for the store (global versions and client updates); decodeStoredWeights reads them back. */
export function encodeStoredWeights(specs: readonly TensorSpec[], flat: Float32Array, dtype: WireDtype = 'float32'): StoredWeights {
  const bytes = encodeWeights(specs, flat, dtype);
  return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: specs.map((s) => ({ name: s.name, shape: [...s.shape] })) } };
}

/**
 * Decodes weights read back from the store and insists they are exactly the bytes its
 * checksum column names (the codec's own trailer only proves the bytes are self-consistent).
 */
export function decodeStoredWeights(bytes: Uint8Array, storedChecksum: string, expected?: readonly TensorSpec[]): DecodedWeights {
  const decoded = decodeWeights(bytes, expected);
  if (decoded.checksum !== storedChecksum) throw new CodecError('checksum_mismatch', 'stored checksum does not match the stored bytes');
  return decoded;
}

function validateSpecs(tensors: unknown): TensorSpec[] {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new CodecError('malformed', 'manifest has no tensors');
  return tensors.map((t, i) => {
    const spec = t as Partial<TensorSpec>;
    if (typeof spec?.name !== 'string' || !Array.isArray(spec.shape) || !spec.shape.every((d) => Number.isInteger(d) && d > 0 && d < 1e8)) {
      throw new CodecError('malformed', `manifest tensor #${i} needs a name and a shape of positive integers`);
    }
    return { name: spec.name, shape: [...spec.shape] };
  });
}

export function assertSameSpecs(actual: readonly TensorSpec[], expected: readonly TensorSpec[]): void {
  if (actual.length !== expected.length) {
    throw new CodecError('shape_mismatch', `weights have ${actual.length} tensors, the model has ${expected.length}`);
  }
  actual.forEach((a, i) => {
    const e = expected[i]!;
    if (a.name !== e.name || a.shape.join('x') !== e.shape.join('x')) {
      throw new CodecError('shape_mismatch', `tensor #${i} is ${a.name} [${a.shape.join(',')}], the model expects ${e.name} [${e.shape.join(',')}]`);
    }
  });
}

function assertFinite(flat: Float32Array): void {
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isFinite(flat[i]!)) throw new CodecError('non_finite', `weight #${i} is ${flat[i]}: NaN and Infinity are refused`);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round-to-nearest-even float32 → IEEE half; values beyond half's range become ±Inf (encodeWeights refuses them). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
