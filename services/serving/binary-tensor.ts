/**
 * The Open Inference Protocol's binary tensor data extension (KServe V2 / Triton), as pure
 * functions over bytes: a request body is a JSON inference request of
 * `Inference-Header-Content-Length` bytes followed by each binary input's bytes, in the
 * order of the inputs that carry `parameters.binary_data_size`; little-endian, row-major, no
 * padding. Pixels then cost one byte (UINT8) or four (FP32) instead of a JSON number each, and
 * nothing is parsed per value. Responses can carry outputs the same way (`binary_data`).
 */
import { InvalidInput } from './errors.js';

export const BINARY_HEADER = 'inference-header-content-length';
export const BINARY_EXTENSION = 'binary_tensor_data';

/** Bytes per element of the datatypes whose binary form this server reads or writes. */
export const BINARY_ELEMENT_BYTES: Readonly<Record<string, number>> = { UINT8: 1, FP16: 2, FP32: 4, FP64: 8, INT64: 8 };

const invalid = (code: string, message: string) => new InvalidInput(code, message);

/** The header's value as a byte count within the body; anything else is a 400 naming the header. */
export function parseHeaderLength(raw: string | string[] | undefined, bodyBytes: number): number {
  const text = Array.isArray(raw) ? raw.join(',') : String(raw ?? '');
  if (!/^\s*\d{1,15}\s*$/.test(text)) throw invalid('invalid_header', `Inference-Header-Content-Length must be a byte count; got '${text.slice(0, 40)}'`);
  const n = Number(text);
  if (n === 0) throw invalid('invalid_header', 'Inference-Header-Content-Length is 0: the body must start with the JSON inference request');
  if (n > bodyBytes) throw invalid('invalid_header', `Inference-Header-Content-Length is ${n} bytes but the body has only ${bodyBytes}`);
  return n;
}

/** The declared size of one input's binary data, or undefined when the input carries JSON data. */
export function binaryDataSize(parameters: Record<string, unknown> | undefined, where: string): number | undefined {
  const size = parameters?.binary_data_size;
  if (size === undefined) return undefined;
  if (!Number.isSafeInteger(size) || (size as number) < 0) throw invalid('invalid_parameter', `${where}: binary_data_size must be a non-negative integer; got ${JSON.stringify(size)}`);
  return size as number;
}

/**
 * Cuts the bytes after the JSON header into one slice per binary input, in order. Every byte
 * must belong to exactly one input: a short or long body is a 400, never a silent misread.
 */
export function sliceBinaryInputs(data: Uint8Array, sizes: readonly (number | undefined)[]): (Uint8Array | undefined)[] {
  const declared = sizes.reduce<number>((a, s) => a + (s ?? 0), 0);
  if (declared !== data.length) {
    throw invalid('binary_size_mismatch', `the inputs declare ${declared} bytes of binary data (binary_data_size) but the body carries ${data.length} after the JSON header`);
  }
  let at = 0;
  return sizes.map((s) => {
    if (s === undefined) return undefined;
    const slice = data.subarray(at, at + s);
    at += s;
    return slice;
  });
}

/** IEEE 754 half precision to a JS number (there is no DataView.getFloat16 in Node 20). */
export function halfToNumber(bits: number): number {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * Writes `count` elements of `datatype` from little-endian `bytes` into `out` on the model's
 * [0,1] scale: UINT8 is divided by 255; floats must already be finite intensities in [0,1]
 * (the same rule as JSON data, so the two encodings of one image give one answer).
 */
export function decodeIntensities(bytes: Uint8Array, datatype: string, out: Float32Array, where: string): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read: (i: number) => number =
    datatype === 'UINT8' ? (i) => bytes[i]! / 255
    : datatype === 'FP32' ? (i) => view.getFloat32(i * 4, true)
    : datatype === 'FP64' ? (i) => view.getFloat64(i * 8, true)
    : datatype === 'FP16' ? (i) => halfToNumber(view.getUint16(i * 2, true))
    : () => {
        throw invalid('unsupported_datatype', `${where}: datatype ${datatype} cannot be sent as binary data here`);
      };
  for (let i = 0; i < out.length; i++) {
    const v = read(i);
    // NaN fails both comparisons' negation: !(v >= 0 && v <= 1) catches it with the range.
    if (!(v >= 0 && v <= 1)) {
      throw invalid(Number.isFinite(v) ? 'out_of_range' : 'non_finite', `${where}: element ${i} is ${v}; pixels must be intensities in [0,1] (or send datatype UINT8)`);
    }
    out[i] = v;
  }
}

/** One output tensor as binary data: little-endian FP32 or INT64 bytes. */
export function encodeOutput(datatype: 'FP32' | 'INT64', values: ArrayLike<number>): Buffer {
  const bytes = Buffer.allocUnsafe(values.length * BINARY_ELEMENT_BYTES[datatype]!);
  for (let i = 0; i < values.length; i++) {
    if (datatype === 'FP32') bytes.writeFloatLE(values[i]!, i * 4);
    else bytes.writeBigInt64LE(BigInt(values[i]!), i * 8);
  }
  return bytes;
}

/** A response body in the extension's form: the JSON header, then every binary output's bytes in order. */
export function binaryResponse(header: unknown, binaries: readonly Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, ...binaries]), headerLength: json.length };
}
