import { describe, expect, it } from 'vitest';
import { parseJsonInTurns, type TensorPath } from '../services/serving/json-turns.js';
import { PackedArray, parsePackedArray } from '../services/serving/packed-json.js';
import { imagesFromNested, imagesFromV2, type InputShape, type V2Input } from '../services/serving/tensor-input.js';

// The fast path for tensor bodies (packed-json.ts) must answer exactly as JSON.parse + the nested walk:
// the same pixels, or the same error (class, code, message), for plain tensors and for everything else.

/** A deterministic generator, so a failure names a case that can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Ways a client writes one number (most read exactly by the fast path; some only by JSON.parse). */
const NUMBER_TEXTS: ((r: () => number) => string)[] = [
  (r) => (r()).toFixed(3),
  (r) => String(r()), // 16-17 digits: JSON.parse only
  (r) => (r()).toExponential(4),
  (r) => (r() * 1e-3).toExponential(2).toUpperCase(),
  (r) => String(Math.floor(r() * 2)),
  () => '-0',
  () => '-0.0',
  (r) => (r() * 300).toFixed(0), // out of range for intensities, fine for UINT8
  (r) => `${(r() * 2).toFixed(2)}`, // half out of range
  (r) => (r() * 0.01).toFixed(20).replace(/0+$/, '') || '0', // many digits
  () => '1e0',
  () => '0.5e-25', // exponent beyond the exact range
];
/** Text that is not a plain number: the fast path must give way, and the walk must say the same. */
const ODD_TEXTS = ['"0.5"', 'null', 'true', '[0.5]', '{}', '[]', '1.', '.5', '01', '+1', '1e', 'NaN', '0.5 0.5'];

function numbers(r: () => number, count: number, style: number, oddAt: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === oddAt ? ODD_TEXTS[Math.floor(r() * ODD_TEXTS.length)]! : NUMBER_TEXTS[style]!(r)));
}

/** Nests `items` as `shape` says; `ragged` drops the last element of one row. */
function nest(items: string[], shape: number[], ragged: boolean, space: string): string {
  let at = 0;
  const build = (dim: number, drop: boolean): string => {
    const n = shape[dim]!;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(dim === shape.length - 1 ? items[at++]! : build(dim + 1, drop && i === 0));
    if (drop && dim === shape.length - 1) parts.pop();
    return `[${space}${parts.join(`,${space}`)}${space}]`;
  };
  return build(0, ragged);
}

type Outcome = { pixels: number[]; count: number } | { error: string; code: unknown; message: string };
/** An error as the client sees it; JSON syntax errors all become one 'invalid_json' answer (body.ts), whatever their position. */
const errorOutcome = (e: unknown): Outcome =>
  e instanceof SyntaxError ? { error: 'SyntaxError', code: undefined, message: '' } : { error: (e as Error).constructor.name, code: (e as { code?: unknown }).code, message: (e as Error).message };
function outcome(fn: () => { pixels: Float32Array; count: number }): Outcome {
  try {
    const b = fn();
    return { pixels: Array.from(b.pixels), count: b.count };
  } catch (e) {
    return errorOutcome(e);
  }
}

async function both(body: string, paths: readonly TensorPath[], read: (parsed: unknown) => { pixels: Float32Array; count: number }, turnBytes?: number) {
  const bytes = Buffer.from(body);
  const slow = outcome(() => read(JSON.parse(body)));
  let fastParsed: unknown;
  try {
    fastParsed = await parseJsonInTurns(bytes, turnBytes, paths);
  } catch (e) {
    return { slow, fast: errorOutcome(e), fastParsed: undefined };
  }
  return { slow, fast: outcome(() => read(fastParsed)), fastParsed };
}

const SHAPE: InputShape = [2, 3, 1];
const PIXELS = 6;
const IMAGE_SHAPES = [[6], [2, 3], [2, 3, 1], [2, 3, 2], [5], [3, 2], [1, 6]];

describe('packed tensors (the fast path) answer as JSON.parse + the nested walk', () => {
  it('TF Serving instances / inputs: random tensors, plain and odd, give the same pixels or the same error', async () => {
    const r = rng(17);
    let packedTaken = 0;
    for (let k = 0; k < 1500; k++) {
      const n = Math.floor(r() * 4); // 0 images: an empty list
      const image = IMAGE_SHAPES[Math.floor(r() * IMAGE_SHAPES.length)]!;
      const shape = [n, ...image];
      const count = shape.reduce((a, b) => a * b, 1);
      const style = r() < 0.6 ? 0 : Math.floor(r() * NUMBER_TEXTS.length);
      const oddAt = r() < 0.15 ? Math.floor(r() * Math.max(count, 1)) : -1;
      const tensor = n === 0 ? '[]' : nest(numbers(r, count, style, oddAt), shape, r() < 0.1, r() < 0.2 ? ' \n' : '');
      const key = r() < 0.5 ? 'instances' : 'inputs';
      const body = r() < 0.2 ? `{"signature_name":"serving_default",  "${key}" : ${tensor}}` : `{"${key}":${tensor}}`;
      const maxBatch = r() < 0.1 ? 1 : 8;
      const read = (parsed: unknown) => imagesFromNested((parsed as Record<string, unknown>)[key], key, maxBatch, SHAPE);
      const { slow, fast, fastParsed } = await both(body, [['instances'], ['inputs']], read, r() < 0.3 ? 16 : undefined);
      if ((fastParsed as Record<string, unknown> | undefined)?.[key] instanceof PackedArray) packedTaken++;
      expect(fast, body).toEqual(slow);
    }
    // Most plain cases take the fast path (the property is not met by always giving way).
    expect(packedTaken).toBeGreaterThan(400);
  });

  it('Open Inference Protocol data: flat or nested, FP32 and UINT8, random shapes, the same answers', async () => {
    const r = rng(99);
    let packedTaken = 0;
    for (let k = 0; k < 1500; k++) {
      const n = 1 + Math.floor(r() * 3);
      const declared = [n, ...IMAGE_SHAPES[Math.floor(r() * 3)]!];
      // The data: flat, nested as declared, or nested in some other shape.
      const form = r();
      const dataShape = form < 0.4 ? [n * PIXELS] : form < 0.8 ? declared : [n, ...IMAGE_SHAPES[Math.floor(r() * IMAGE_SHAPES.length)]!];
      const count = dataShape.reduce((a, b) => a * b, 1);
      const datatype = r() < 0.7 ? 'FP32' : r() < 0.5 ? 'UINT8' : 'INT8';
      const style = datatype === 'UINT8' ? (r() < 0.7 ? 7 : Math.floor(r() * NUMBER_TEXTS.length)) : r() < 0.6 ? 0 : Math.floor(r() * NUMBER_TEXTS.length);
      const oddAt = r() < 0.15 ? Math.floor(r() * count) : -1;
      const data = nest(numbers(r, count, style, oddAt), dataShape, r() < 0.1, '');
      const body = `{"id":"x","inputs":[{"name":"images","shape":${JSON.stringify(declared)},"datatype":"${datatype}","data":${data}}]}`;
      const read = (parsed: unknown) => imagesFromV2((parsed as { inputs: V2Input[] }).inputs[0]!, 8, SHAPE);
      const { slow, fast, fastParsed } = await both(body, [['inputs', 0, 'data']], read);
      if ((fastParsed as { inputs: { data: unknown }[] } | undefined)?.inputs[0]?.data instanceof PackedArray) packedTaken++;
      expect(fast, body).toEqual(slow);
    }
    expect(packedTaken).toBeGreaterThan(400);
  });

  it('reads a number only when its value is exactly what JSON.parse gives', async () => {
    const r = rng(5);
    let read = 0;
    for (let k = 0; k < 20_000; k++) {
      const text = NUMBER_TEXTS[k % NUMBER_TEXTS.length]!(r);
      const v = (r() < 0.5 ? '-' : '') + text;
      const bytes = Buffer.from(`[${v}]`);
      const packed = await parsePackedArray(bytes, 0, bytes.length - 1);
      if (!packed) continue;
      read++;
      expect(Object.is(packed.values[0], JSON.parse(v)), v).toBe(true);
    }
    expect(read).toBeGreaterThan(10_000);
  });

  it('gives way to JSON.parse where the tensor is not where the protocol reads it, or the envelope is odd', async () => {
    const tensor = nest(Array.from({ length: 12 }, () => '0.5'), [2, 6], false, '');
    for (const body of [`{"other":${tensor}}`, `{"instances":{"images":${tensor}}}`, `{"instances":${tensor},"instances":[[0.1]]}`, `[${tensor}]`]) {
      const parsed = await parseJsonInTurns(Buffer.from(body), undefined, [['instances'], ['inputs']]);
      expect(parsed, body).toEqual(JSON.parse(body));
    }
    // Invalid JSON around a plain tensor is still invalid.
    await expect(parseJsonInTurns(Buffer.from(`{"instances":${tensor},}`), undefined, [['instances']])).rejects.toThrow();
  });
});
