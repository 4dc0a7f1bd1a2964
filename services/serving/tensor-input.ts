import { HttpError, badRequest } from '../http/errors.js';
import { PIXELS } from '../core/model.js';

export interface Batch {
  pixels: Float32Array;
  count: number;
}

const tooMany = (n: number, max: number) => new HttpError(413, 'batch_too_large', `${n} images in one request; the limit is ${max}`);

/**
 * Images given as a list, each flat (784 values), 28x28 or 28x28x1: the TF Serving
 * `instances`/`inputs` forms. Values must be intensities in [0,1]; 0..255 input is
 * refused rather than silently misread.
 */
export function imagesFromNested(value: unknown, field: string, maxBatch: number): Batch {
  if (!Array.isArray(value)) throw badRequest('invalid_shape', `'${field}' must be an array of images`);
  if (value.length === 0) throw badRequest('invalid_shape', `'${field}' is empty`);
  if (value.length > maxBatch) throw tooMany(value.length, maxBatch);
  const pixels = new Float32Array(value.length * PIXELS);
  value.forEach((image, i) => {
    const offset = i * PIXELS;
    const written = writeImage(image, pixels, offset, `${field}[${i}]`);
    if (written !== PIXELS) throw badRequest('invalid_shape', `${field}[${i}] has ${written} values; each image needs 784 (flat, 28x28 or 28x28x1)`);
  });
  return { pixels, count: value.length };
}

function writeImage(image: unknown, out: Float32Array, offset: number, where: string): number {
  if (!Array.isArray(image)) throw badRequest('invalid_shape', `${where} must be an array (784 values, 28x28 or 28x28x1)`);
  if (image.length === PIXELS) return writeFlat(image, out, offset, where);
  if (image.length !== 28) throw badRequest('invalid_shape', `${where} has length ${image.length}; expected 784 or 28 rows`);
  let n = 0;
  for (let r = 0; r < 28; r++) {
    const row = image[r];
    if (!Array.isArray(row) || row.length !== 28) throw badRequest('invalid_shape', `${where}[${r}] must be a row of 28 pixels`);
    for (let c = 0; c < 28; c++) {
      let v = row[c];
      if (Array.isArray(v)) {
        if (v.length !== 1) throw badRequest('invalid_shape', `${where}[${r}][${c}] must have exactly one channel`);
        v = v[0];
      }
      out[offset + n] = pixel(v, `${where}[${r}][${c}]`);
      n++;
    }
  }
  return n;
}

function writeFlat(values: unknown[], out: Float32Array, offset: number, where: string): number {
  for (let i = 0; i < values.length; i++) out[offset + i] = pixel(values[i], `${where}[${i}]`);
  return values.length;
}

function pixel(v: unknown, where: string): number {
  if (typeof v !== 'number') throw new HttpError(400, 'invalid_dtype', `${where} is ${v === null ? 'null' : typeof v}; pixels must be numbers`);
  if (!Number.isFinite(v)) throw badRequest('non_finite', `${where} is not finite`);
  if (v < 0 || v > 1) throw badRequest('out_of_range', `${where} is ${v}; pixels must be intensities in [0,1] (divide 0..255 values by 255)`);
  return v;
}

/** Open Inference Protocol tensor: FP32, shape [N,784], [N,28,28] or [N,28,28,1], data flat or nested in row-major order. */
export function imagesFromV2(input: unknown, maxBatch: number): Batch {
  const t = input as { name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown };
  if (!t || typeof t !== 'object') throw badRequest('invalid_input', 'each input must be an object with name, shape, datatype and data');
  if (t.datatype !== 'FP32') throw badRequest('invalid_dtype', `datatype must be FP32; got ${JSON.stringify(t.datatype)}`);
  const shape = t.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) throw badRequest('invalid_shape', 'shape must be an array of positive integers');
  const s = shape.join(',');
  const n = shape[0] as number;
  if (!(shape.length === 2 && s.endsWith(',784')) && !(shape.length === 3 && s.endsWith(',28,28')) && !(shape.length === 4 && s.endsWith(',28,28,1'))) {
    throw badRequest('invalid_shape', `shape [${s}] is not [N,784], [N,28,28] or [N,28,28,1]`);
  }
  if (n > maxBatch) throw tooMany(n, maxBatch);
  if (!Array.isArray(t.data)) throw badRequest('invalid_input', 'data must be an array');
  const flat = (t.data as unknown[]).flat(4);
  if (flat.length !== n * PIXELS) throw badRequest('invalid_shape', `shape [${s}] needs ${n * PIXELS} values; data has ${flat.length}`);
  const pixels = new Float32Array(flat.length);
  for (let i = 0; i < flat.length; i++) pixels[i] = pixel(flat[i], `data[${i}]`);
  return { pixels, count: n };
}
