/**
 * Request bodies for the hostile serving load (bench/hostile-serving.ts): the largest legal
 * requests the serving function's limits allow, and a fuzz mix of hostile ones.
 */
import { PNG } from 'pngjs';
import { INPUT_SHAPE, PIXELS } from '../services/core/model.js';
import type { ServingLimits } from '../services/serving/limits.js';
import { digitPixels } from './lib/setup.js';

export interface Payload {
  name: string;
  path: string;
  type: string;
  body: Buffer;
  /** The statuses that are a correct answer (429 is always one: load shedding). */
  expect: number[];
}

const json = (name: string, path: string, text: string, expect: number[]): Payload => ({ name, path, type: 'application/json', body: Buffer.from(text), expect });
const PREDICT = '/v1/models/mnist:predict';
const INFER = '/v2/models/mnist/infer';

/** Real digits, 3 decimals, as many whole images as fit in `maxBytes` (and the batch limit). */
function digitRows(maxBytes: number, maxImages: number, render: (px: Float32Array) => string): string[] {
  const rows: string[] = [];
  let size = 64;
  const cycle = digitPixels(100);
  while (rows.length < maxImages) {
    const i = rows.length % 100;
    const row = render(cycle.subarray(i * PIXELS, (i + 1) * PIXELS));
    if (size + row.length + 1 > maxBytes) break;
    rows.push(row);
    size += row.length + 1;
  }
  return rows;
}

const num = (v: number) => (v === 0 ? '0' : String(Math.round(v * 1000) / 1000));
const flatRow = (px: Float32Array) => `[${Array.from(px, num).join(',')}]`;
const [H, W] = INPUT_SHAPE;
const nestedRow = (px: Float32Array) => `[${Array.from({ length: H }, (_, r) => `[${Array.from(px.subarray(r * W, (r + 1) * W), (v) => `[${num(v)}]`).join(',')}]`).join(',')}]`;

/** A PNG of `side` x `side` holding a scaled-up digit: compresses to little, decodes to side² pixels. */
export function digitPng(side: number): Buffer {
  const px = digitPixels(1);
  const png = new PNG({ width: side, height: side });
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const g = Math.round(255 * px[Math.floor((y * H) / side) * W + Math.floor((x * W) / side)]!);
      png.data.writeUInt32BE(((g << 24) | (g << 16) | (g << 8) | 0xff) >>> 0, (y * side + x) * 4);
    }
  }
  return PNG.sync.write(png, { deflateLevel: 1 });
}

/** The largest legal requests under `limits`: each should be answered 200 (or 429 when the function is busy). */
export function maxLegal(limits: ServingLimits): Payload[] {
  const fit = limits.maxBodyBytes - 128;
  const rowsV1 = digitRows(fit, limits.maxBatch, flatRow);
  const zeros = `[${Array(PIXELS).fill('0').join(',')}]`;
  const denseCount = Math.min(limits.maxBatch, Math.floor((fit - 32) / (zeros.length + 1)));
  // One array per row and per pixel: the container limit, not the body size, bounds this form.
  const rowsV2 = digitRows(fit, Math.floor((limits.maxContainers - 16) / (1 + H + H * W)), nestedRow);
  const rowsFlat = digitRows(fit, limits.maxBatch, (px) => Array.from(px, num).join(','));
  const side = Math.floor(Math.sqrt(limits.imagePixelBudget));
  return [
    json(`v1 predict, ${rowsV1.length} digits`, PREDICT, `{"instances":[${rowsV1.join(',')}]}`, [200]),
    json(`v1 predict, ${denseCount} zero images (densest JSON)`, PREDICT, `{"instances":[${Array(denseCount).fill(zeros).join(',')}]}`, [200]),
    json(`v2 infer, ${rowsFlat.length} digits flat`, INFER, `{"inputs":[{"name":"images","shape":[${rowsFlat.length},${PIXELS}],"datatype":"FP32","data":[${rowsFlat.join(',')}]}]}`, [200]),
    json(`v2 infer, ${rowsV2.length} digits nested [N,${INPUT_SHAPE.join(',')}]`, INFER, `{"inputs":[{"name":"images","shape":[${rowsV2.length},${INPUT_SHAPE.join(',')}],"datatype":"FP32","data":[${rowsV2.join(',')}]}]}`, [200]),
    { name: `classify, one ${side}x${side} PNG`, path: '/v1/models/mnist:classify', type: 'image/png', body: digitPng(side), expect: [200] },
  ];
}

/** Hostile requests: each must get its 4xx, never a 5xx, and never take the function down. */
export function hostile(limits: ServingLimits): Payload[] {
  const big = digitPng(4096);
  const bomb = Buffer.from(digitPng(28));
  bomb.writeUInt32BE(100_000, 16);
  bomb.writeUInt32BE(100_000, 20);
  const underLimit = limits.maxBodyBytes - 64;
  const emptyArrays = Math.floor((underLimit - 20) / 3);
  const deep = 100_000;
  return [
    { name: '4096x4096 PNG', path: '/v1/models/mnist:classify', type: 'image/png', body: big, expect: [413] },
    { name: 'PNG declaring 100000x100000', path: '/v1/models/mnist:classify', type: 'image/png', body: bomb, expect: [413] },
    json(`${emptyArrays} empty arrays (container bomb)`, PREDICT, `{"instances":[${Array(emptyArrays).fill('[]').join(',')}]}`, [413]),
    json(`arrays nested ${deep} deep`, PREDICT, `{"instances":${'['.repeat(deep)}${']'.repeat(deep)}}`, [400, 413]),
    json('body over the limit', PREDICT, `{"instances":[],"pad":"${'x'.repeat(limits.maxBodyBytes)}"}`, [413]),
    json('shape declaring 10^9 images', INFER, `{"inputs":[{"name":"images","shape":[1000000000,${PIXELS}],"datatype":"FP32","data":[]}]}`, [413]),
    json('one image, 0..255 values', PREDICT, `{"instances":[[${Array(PIXELS).fill(255).join(',')}]]}`, [400]),
    json('truncated JSON', PREDICT, '{"instances":[[0.1,0.2', [400]),
    json('BYTES tensor', INFER, `{"inputs":[{"name":"images","shape":[1,${PIXELS}],"datatype":"BYTES","data":["x"]}]}`, [400]),
  ];
}

/** One small legal request: the "normal predictions" that must keep being answered. */
export function normal(): Payload {
  return json('v1 predict, 1 digit', PREDICT, `{"instances":[${flatRow(digitPixels(1))}]}`, [200]);
}
