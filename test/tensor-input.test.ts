import { describe, expect, it } from 'vitest';
import { imagesFromNested, imagesFromV2, V2_DATATYPES } from '../services/serving/tensor-input.js';
import { httpError } from './helpers/serving-error.js';

// The JSON tensors of the two prediction protocols, read to pixels; images: images.test.ts.
const PIXELS = 784;

describe('imagesFromNested (TF Serving instances / inputs)', () => {
  const flat = Array.from({ length: PIXELS }, (_, i) => (i % 256) / 255);
  const rows = Array.from({ length: 28 }, (_, r) => flat.slice(r * 28, r * 28 + 28));
  const channels = rows.map((row) => row.map((v) => [v]));

  it('reads flat, 28x28 and 28x28x1 images to the same pixels, in order', () => {
    const batch = imagesFromNested([flat, rows, channels], 'instances', 8);
    expect(batch.count).toBe(3);
    expect(batch.pixels.length).toBe(3 * PIXELS);
    for (let k = 0; k < 3; k++) expect(Array.from(batch.pixels.subarray(k * PIXELS, (k + 1) * PIXELS))).toEqual(Array.from(Float32Array.from(flat)));
  });

  const bad: [string, unknown, number, string, RegExp?][] = [
    ['not a list', { a: 1 }, 400, 'invalid_shape'],
    ['empty', [], 400, 'invalid_shape'],
    ['an image that is a number', [0.5], 400, 'invalid_shape', /instances\[0\]/],
    ['783 values', [flat.slice(1)], 400, 'invalid_shape'],
    ['27 rows', [rows.slice(1)], 400, 'invalid_shape'],
    ['a short row', [rows.map((r, i) => (i === 27 ? r.slice(1) : r))], 400, 'invalid_shape', /\[27\]/],
    ['two channels', [channels.map((r) => r.map((p) => [p[0], p[0]]))], 400, 'invalid_shape'],
    ['a string', [flat.map((v, i) => (i === 5 ? 'NaN' : v))], 400, 'invalid_dtype', /\[5\]/],
    ['a null', [rows.map((r) => r.map((v, c) => (c === 3 ? null : v)))], 400, 'invalid_dtype'],
    ['Infinity', [flat.map((v, i) => (i === 5 ? Infinity : v))], 400, 'non_finite'],
    ['NaN', [flat.map((v, i) => (i === 5 ? NaN : v))], 400, 'non_finite'],
    ['255', [flat.map((v, i) => (i === 5 ? 255 : v))], 400, 'out_of_range'],
    ['-0.01', [flat.map((v, i) => (i === 5 ? -0.01 : v))], 400, 'out_of_range'],
    ['more images than maxBatch', [flat, flat, flat], 413, 'batch_too_large'],
  ];
  for (const [name, value, status, code, where] of bad) {
    it(`refuses ${name} with ${status} ${code}`, () => {
      const e = httpError(() => imagesFromNested(value, 'instances', 2));
      expect(e).toMatchObject({ status, code });
      if (where) expect(e.message).toMatch(where);
    });
  }

  it('the second image is checked too', () => {
    expect(httpError(() => imagesFromNested([flat, flat.slice(2)], 'inputs', 4)).message).toMatch(/inputs\[1\]/);
  });
});

describe('imagesFromV2 (KServe V2 tensors)', () => {
  const flat = Array.from({ length: 2 * PIXELS }, (_, i) => (i % 100) / 100);
  const nested = [0, 1].map((n) => Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [flat[n * PIXELS + r * 28 + c]!])));

  it('reads [N,784], [N,28,28] and [N,28,28,1], flat or nested, to the same pixels', () => {
    const want = Array.from(Float32Array.from(flat));
    const a = imagesFromV2({ name: 'images', shape: [2, 784], datatype: 'FP32', data: flat }, 4);
    const b = imagesFromV2({ name: 'images', shape: [2, 28, 28, 1], datatype: 'FP32', data: nested }, 4);
    const c = imagesFromV2({ name: 'images', shape: [2, 28, 28], datatype: 'FP32', data: flat }, 4);
    const d = imagesFromV2({ name: 'images', shape: [2, 784], datatype: 'FP32', data: [flat.slice(0, PIXELS), flat.slice(PIXELS)] }, 4);
    for (const batch of [a, b, c, d]) {
      expect(batch.count).toBe(2);
      expect(Array.from(batch.pixels)).toEqual(want);
    }
  });

  it('reads FP64 and FP16 as intensities and UINT8 as 0..255; every other listed datatype is refused', () => {
    const data = flat.slice(0, PIXELS);
    for (const datatype of ['FP64', 'FP16']) expect(Array.from(imagesFromV2({ shape: [1, 784], datatype, data }, 1).pixels)).toEqual(Array.from(Float32Array.from(data)));
    const bytes = data.map((v) => Math.round(v * 255));
    expect(Array.from(imagesFromV2({ shape: [1, 784], datatype: 'UINT8', data: bytes }, 1).pixels)).toEqual(Array.from(Float32Array.from(bytes, (b) => b / 255)));
    const listed = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'];
    expect(Object.keys(V2_DATATYPES).sort()).toEqual([...listed].sort());
  });

  const good = { name: 'images', shape: [1, 784], datatype: 'FP32', data: flat.slice(0, PIXELS) };
  const bad: [string, unknown, number, string][] = [
    ['null', null, 400, 'invalid_input'],
    ['BYTES', { ...good, datatype: 'BYTES' }, 400, 'unsupported_datatype'],
    ['INT32', { ...good, datatype: 'INT32' }, 400, 'unsupported_datatype'],
    ['a datatype the protocol does not list', { ...good, datatype: 'FLOAT32' }, 400, 'invalid_datatype'],
    ['no datatype', { ...good, datatype: undefined }, 400, 'invalid_datatype'],
    ['UINT8 above 255', { ...good, datatype: 'UINT8', data: good.data.map((v, i) => (i === 1 ? 256 : 0)) }, 400, 'out_of_range'],
    ['UINT8 with a fraction', { ...good, datatype: 'UINT8', data: good.data.map((v, i) => (i === 1 ? 0.5 : 0)) }, 400, 'invalid_dtype'],
    ['shape [784]', { ...good, shape: [784] }, 400, 'invalid_shape'],
    ['shape [1,1784]', { ...good, shape: [1, 1784] }, 400, 'invalid_shape'],
    ['shape [1,128,28]', { ...good, shape: [1, 128, 28] }, 400, 'invalid_shape'],
    ['shape [1,28,28,1,1]', { ...good, shape: [1, 28, 28, 1, 1] }, 400, 'invalid_shape'],
    ['shape [0,784]', { ...good, shape: [0, 784], data: [] }, 400, 'invalid_shape'],
    ['shape [1.5,784]', { ...good, shape: [1.5, 784] }, 400, 'invalid_shape'],
    ['shape ["1","784"]', { ...good, shape: ['1', '784'] }, 400, 'invalid_shape'],
    ['data not a list', { ...good, data: 'x' }, 400, 'invalid_input'],
    ['too few values', { ...good, data: flat.slice(0, 700) }, 400, 'invalid_shape'],
    ['too many values', { ...good, data: flat }, 400, 'invalid_shape'],
    ['a string value', { ...good, data: good.data.map((v, i) => (i === 1 ? '0.5' : v)) }, 400, 'invalid_dtype'],
    ['an object value', { ...good, data: good.data.map((v, i) => (i === 1 ? { v } : v)) }, 400, 'invalid_dtype'],
    ['an out-of-range value', { ...good, data: good.data.map((v, i) => (i === 1 ? 1.01 : v)) }, 400, 'out_of_range'],
    ['N over maxBatch (checked before the data)', { ...good, shape: [5, 784], data: [] }, 413, 'batch_too_large'],
  ];
  for (const [name, input, status, code] of bad) {
    it(`refuses ${name} with ${status} ${code}`, () => {
      expect(httpError(() => imagesFromV2(input as Parameters<typeof imagesFromV2>[0], 4))).toMatchObject({ status, code });
    });
  }
});
