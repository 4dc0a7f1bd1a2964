import { describe, expect, it } from 'vitest';
import { createRng } from '../datasets/rng.js';
import { DenseArrayReader, DenseTensor, type DenseArray } from '../services/serving/dense-json.js';
import { parseJsonInTurns, parseTensorJson, type BodyPath } from '../services/serving/json-turns.js';
import { countJsonValues } from '../services/serving/body.js';
import { imagesFromNested, imagesFromV2, type Batch } from '../services/serving/tensor-input.js';
import { ServingError } from '../services/serving/errors.js';
import { TRICKY_JSON_DOCS } from './helpers/json-docs.js';

// Tensor bodies read straight into Float32 (dense-json.ts): the same values, shapes and refusals as JSON.parse and the walk.
const PIXELS = 784;

function readWhole(text: string, pauseAfter = Infinity): DenseArray | null {
  const bytes = Buffer.from(text);
  const reader = new DenseArrayReader(bytes, text.indexOf('['), new Float32Array(countJsonValues(bytes).values));
  for (;;) {
    const r = reader.read(pauseAfter);
    if (r !== 'paused') return r;
  }
}

/** Numbers in every form JSON allows, and the forms pixels are usually sent in. */
function randomNumberText(rng: () => number): string {
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(rng() * 10)).join('');
  const int = rng() < 0.4 ? '0' : String(1 + Math.floor(rng() * 9)) + digits(Math.floor(rng() * 6));
  const frac = rng() < 0.6 ? `.${digits(1 + Math.floor(rng() * 19))}` : '';
  const exp = rng() < 0.25 ? `${rng() < 0.5 ? 'e' : 'E'}${['', '+', '-'][Math.floor(rng() * 3)]}${digits(1 + Math.floor(rng() * 2))}` : '';
  return `${rng() < 0.2 ? '-' : ''}${int}${frac}${exp}`;
}

describe('DenseArrayReader', () => {
  it('gives the Float32 of the double JSON.parse gives, for every number it reads (and gives up on none of the pixel forms)', () => {
    const rng = createRng(11);
    let read = 0;
    let gaveUpFar = 0;
    for (let k = 0; k < 20_000; k++) {
      const text = randomNumberText(rng);
      const r = readWhole(`[${text}]`);
      const want = JSON.parse(text) as number;
      if (r === null) {
        // Given up on: only numbers beyond what a double's exact powers of ten reach, or (rarely) past 15 digits.
        const [, int = '', frac = '', exp = '0'] = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!;
        const significant = (int + frac).replace(/^0+/, '').length;
        if (Math.abs(Number(exp) - frac.length) <= 22) expect(significant, text).toBeGreaterThan(15);
        else if (significant <= 15) gaveUpFar++;
        continue;
      }
      read++;
      expect(Object.is(r.values[0], Math.fround(want)), text).toBe(true);
      expect(r.unitRange, text).toBe(want >= 0 && want <= 1);
    }
    expect(read).toBeGreaterThan(15_000);
    expect(gaveUpFar).toBeGreaterThan(0);
    // Long integer parts (digits past the 19th dropped but still scaling) and long runs of leading zeros in a fraction.
    for (const text of ['123456789012345678901234', '98765432109876543210987e-10', '0.00000000000000000012', '0.000123456789012345678', '-0.0000000000000000000001']) {
      const r = readWhole(`[${text}]`);
      expect(r, text).not.toBeNull();
      expect(r!.values[0], text).toBe(Math.fround(JSON.parse(text) as number));
    }
    // What pixels look like: n/255 printed in full, rounded, 0 and 1.
    for (let v = 0; v <= 255; v++) {
      for (const text of [String(v / 255), (v / 255).toFixed(3), String(Math.round((v / 255) * 1000) / 1000)]) {
        const r = readWhole(`[${text}]`);
        expect(r, text).not.toBeNull();
        expect(r!.values[0]).toBe(Math.fround(Number(text)));
      }
    }
  });

  it('gives up on everything JSON.parse refuses, and on what it leaves to JSON.parse', () => {
    const refused = ['01', '1.', '.5', '-', '+1', '1e', '1e+', '--1', '0x10', 'NaN', 'Infinity', '1,', ',1', '1 2', '"1"', 'true', 'null', '{}', '[[1],2]', '[1,[2]]', '[]', '[[1,2],[3]]', '[[1],[2,3]]'];
    for (const body of refused) {
      const text = body.startsWith('[') ? body : `[${body}]`;
      expect(readWhole(text), text).toBeNull();
    }
    expect(readWhole('[1e400]')).toBeNull();
    // Within 2^-48 of 1: whether JSON.parse's double is 1 (in range) or above cannot be told here.
    expect(readWhole('[1.0000000000000000000000001]')).toBeNull();
    expect(readWhole('[1.000000000000000000000001e-1]')).not.toBeNull();
    // Above 1 by less than a Float32 step (so its Float32 is 1), written with more than 15 digits: out of range all the same.
    const justAbove = readWhole('[1.0000000100000000001]');
    expect(justAbove?.values[0]).toBe(1);
    expect(justAbove?.unitRange).toBe(false);
  });

  it('reads the dimensions of regular nesting, whitespace anywhere, and -0 as -0', () => {
    const r = readWhole(' [ [ [0.5 , 1 ] ,\n[ 0,\t0.25\r] ] , [[-0,1e-1],[2E0,3]] ] ');
    expect(r?.dims).toEqual([2, 2, 2]);
    expect(Array.from(r!.values)).toEqual([0.5, 1, 0, 0.25, -0, Math.fround(0.1), 2, 3]);
    expect(Object.is(r!.values[4], -0)).toBe(true);
    expect(r!.unitRange).toBe(false);
  });

  it('paused at every value boundary, reads what it reads in one go', () => {
    const rng = createRng(3);
    // Half zeros, which take their own short way through the reader.
    const doc = Array.from({ length: 7 }, () => Array.from({ length: 5 }, () => Array.from({ length: 3 }, () => (rng() < 0.5 ? 0 : Math.round(rng() * 1e4) / 1e4))));
    const text = JSON.stringify(doc);
    const whole = readWhole(text)!;
    const paused = readWhole(text, 1)!;
    expect(paused.dims).toEqual([7, 5, 3]);
    expect(Array.from(paused.values)).toEqual(Array.from(whole.values));
    expect(Array.from(whole.values)).toEqual(Array.from(Float32Array.from(doc.flat(2))));
  });

  it('pauses within a long run of zeros too', () => {
    const bytes = Buffer.from(`[[${Array(1000).fill(0).join(',')}]]`);
    const reader = new DenseArrayReader(bytes, 0, new Float32Array(1000));
    let pauses = 0;
    let r: ReturnType<DenseArrayReader['read']>;
    while ((r = reader.read(100)) === 'paused') pauses++;
    expect(pauses).toBeGreaterThanOrEqual(Math.floor(bytes.length / 100) - 1);
    expect(r?.dims).toEqual([1, 1000]);
  });

  it('gives up when the values outnumber the buffer it was given', () => {
    const bytes = Buffer.from('[1,2,3]');
    expect(new DenseArrayReader(bytes, 0, new Float32Array(2)).read()).toBeNull();
    expect(new DenseArrayReader(bytes, 0, new Float32Array(3)).read()).not.toBeNull();
  });
});

const tfSites = (p: BodyPath) => p.length === 1 && (p[0] === 'instances' || p[0] === 'inputs');
const everywhere = () => true;
const nowhere = () => false;

async function parse(text: string, sites: (p: BodyPath) => boolean, turnBytes?: number): Promise<unknown> {
  const bytes = Buffer.from(text);
  return parseTensorJson(bytes, sites, countJsonValues(bytes).values, turnBytes);
}

/** The parsed body with every DenseTensor replaced by what JSON.parse gives for its bytes. */
function nested(value: unknown): unknown {
  if (value instanceof DenseTensor) return value.nested();
  if (value === null || typeof value !== 'object') return value;
  for (const key of Object.keys(value)) (value as Record<string, unknown>)[key] = nested((value as Record<string, unknown>)[key]);
  return value;
}

describe('parseTensorJson', () => {
  const image = (k: number) => Array.from({ length: PIXELS }, (_, i) => ((i * 7 + k) % 256) / 255);

  it('reads the tensor of a predict body as a DenseTensor, and nothing else', async () => {
    const text = JSON.stringify({ signature_name: 'serving_default', instances: [image(0), image(1)] });
    const body = (await parse(text, tfSites)) as { instances: unknown; signature_name: string };
    expect(body.instances).toBeInstanceOf(DenseTensor);
    const t = body.instances as DenseTensor;
    expect(t.dims).toEqual([2, PIXELS]);
    expect(t.unitRange).toBe(true);
    expect(Array.from(t.values)).toEqual(Array.from(Float32Array.from([...image(0), ...image(1)])));
    expect(body.signature_name).toBe('serving_default');
    // The V2 form: the shape array is read and passed over; the data is the tensor.
    const v2 = JSON.stringify({ id: 'x', inputs: [{ name: 'images', shape: [2, PIXELS], datatype: 'FP32', data: [...image(0), ...image(1)] }] });
    const parsed = (await parse(v2, (p) => p.length === 3 && p[2] === 'data')) as { inputs: { data: unknown; shape: unknown }[] };
    expect(parsed.inputs[0]!.data).toBeInstanceOf(DenseTensor);
    expect(parsed.inputs[0]!.shape).toEqual([2, PIXELS]);
  });

  it('gives what JSON.parse gives for any other body, or where a tensor may not stand', async () => {
    const docs = [
      ...TRICKY_JSON_DOCS,
      { note: '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]', instances: [1] },
      { instances: [[1, 2], [3]], other: [[1, 2], [3, 4]] },
      { a: { b: { c: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]] } } },
      [1e300, 1.7976931348623157e308, 5e-324, 0.1, 123456789012345680000],
    ];
    for (const doc of docs) {
      const text = JSON.stringify(doc);
      for (const sites of [everywhere, nowhere, tfSites]) {
        for (const turnBytes of [undefined, 4]) {
          const parsed = await parse(text, sites, turnBytes);
          if (sites === nowhere) expect(JSON.stringify(parsed)).toBe(text);
          const plain = nested(parsed);
          expect(JSON.stringify(plain)).toBe(text);
          expect(Object.getPrototypeOf(plain)).toBe(Object.getPrototypeOf(doc));
        }
      }
    }
  });

  it('refuses what JSON.parse refuses, whatever the tensor looks like', async () => {
    const tensor = JSON.stringify([image(0), image(1)]);
    const bad = [`{"instances":${tensor},}`, `{"instances":${tensor}`, `{"instances" ${tensor}}`, `{"instances":${tensor}]}`, `{"a":1 "instances":${tensor}}`, `${tensor},`, `{"instances":${tensor.slice(0, -1)}}`];
    for (const text of bad) {
      expect(() => JSON.parse(text)).toThrow();
      await expect(parse(text, everywhere)).rejects.toThrow();
    }
  });

  it('yields to the event loop while reading a large tensor', async () => {
    let turns = 0;
    let running = true;
    const tick = () => {
      turns++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const text = JSON.stringify({ instances: Array.from({ length: 200 }, (_, k) => image(k)) });
    const body = (await parse(text, tfSites, 16 * 1024)) as { instances: DenseTensor };
    running = false;
    expect(body.instances).toBeInstanceOf(DenseTensor);
    expect(turns).toBeGreaterThanOrEqual(Math.floor(text.length / (16 * 1024)) - 1);
  });
});

/** The pixels or the error each path gives: read as a DenseTensor, and from JSON.parse's arrays. */
async function bothWays(text: string, sites: (p: BodyPath) => boolean, walk: (body: unknown) => Batch) {
  const outcome = (fn: () => Batch) => {
    try {
      const b = fn();
      return { count: b.count, pixels: Array.from(b.pixels) };
    } catch (e) {
      expect(e).toBeInstanceOf(ServingError);
      return { code: (e as ServingError).code, message: (e as ServingError).message };
    }
  };
  const dense = await parse(text, sites);
  const plain = await parseJsonInTurns(Buffer.from(text));
  return { dense: outcome(() => walk(dense)), plain: outcome(() => walk(plain)), wasDense: JSON.stringify(dense) !== JSON.stringify(plain) };
}

describe('reading a DenseTensor into images', () => {
  const flat = Array.from({ length: PIXELS }, (_, i) => (i % 256) / 255);
  const rows = Array.from({ length: 28 }, (_, r) => flat.slice(r * 28, r * 28 + 28));
  const channels = rows.map((row) => row.map((v) => [v]));
  const set = <T>(a: T[], i: number, v: T) => a.map((x, k) => (k === i ? v : x));

  it('TF Serving: the same pixels and the same refusals as the nested arrays', async () => {
    const cases: [string, unknown, boolean][] = [
      ['flat', [flat, flat], true],
      ['28x28', [rows], true],
      ['28x28x1', [channels, channels], true],
      ['out of range at [1][517]', [flat, set(flat, 517, 1.5)], false],
      ['negative', [set(flat, 3, -0.25)], false],
      ['783 values', [flat.slice(1), flat.slice(1)], false],
      ['27 rows', [rows.slice(1)], false],
      ['two channels', [channels.map((r) => r.map((p) => [p[0], p[0]]))], false],
      ['28x28x1x1', [channels.map((r) => r.map((p) => [p]))], false],
      ['more images than the limit', [flat, flat, flat, flat, flat], false],
      ['a flat list of numbers', flat, false],
    ];
    for (const [name, instances, accepted] of cases) {
      for (const key of ['instances', 'inputs']) {
        const r = await bothWays(JSON.stringify({ [key]: instances }), tfSites, (b) => imagesFromNested((b as Record<string, unknown>)[key], key, 4));
        expect(r.wasDense, name).toBe(true);
        expect(r.dense, name).toEqual(r.plain);
        expect('pixels' in r.dense, name).toBe(accepted);
      }
    }
  });

  it('V2: the same pixels and the same refusals as the nested arrays', async () => {
    const two = [...flat, ...flat.map((v) => 1 - v)];
    const cases: [string, { shape: number[]; datatype: string; data: unknown }, boolean][] = [
      ['[2,784] flat', { shape: [2, PIXELS], datatype: 'FP32', data: two }, true],
      ['[2,784] nested', { shape: [2, PIXELS], datatype: 'FP32', data: [flat, flat] }, true],
      ['[1,28,28,1] nested', { shape: [1, 28, 28, 1], datatype: 'FP64', data: [channels] }, true],
      ['[2,28,28] flat', { shape: [2, 28, 28], datatype: 'FP16', data: two }, true],
      ['UINT8', { shape: [1, PIXELS], datatype: 'UINT8', data: flat.map((v) => Math.round(v * 255)) }, true],
      ['UINT8 of 256', { shape: [1, PIXELS], datatype: 'UINT8', data: set(flat.map((v) => Math.round(v * 255)), 9, 256) }, false],
      ['out of range', { shape: [2, PIXELS], datatype: 'FP32', data: set(two, 900, 2) }, false],
      ['nested as another shape', { shape: [1, 28, 28], datatype: 'FP32', data: [flat] }, false],
      ['too few values', { shape: [2, PIXELS], datatype: 'FP32', data: flat }, false],
    ];
    for (const [name, input, accepted] of cases) {
      const text = JSON.stringify({ inputs: [{ name: 'images', ...input }] });
      const r = await bothWays(text, (p) => p.length === 3 && p[2] === 'data', (b) => imagesFromV2((b as { inputs: Parameters<typeof imagesFromV2>[0][] }).inputs[0]!, 4));
      expect(r.wasDense, name).toBe(true);
      expect(r.dense, name).toEqual(r.plain);
      expect('pixels' in r.dense, name).toBe(accepted);
    }
  });
});

describe('random bodies, read both ways', () => {
  // Small images (4x4x1) so that a mutation often lands in the tensor and the walk still has shapes to refuse.
  const shape = [4, 4, 1] as const;
  const alphabet = '0123456789.-+eE,[] "\t\nx{}:';

  function randomBody(rng: () => number): string {
    const value = () => (rng() < 0.5 ? '0' : rng() < 0.005 ? randomNumberText(rng) : String(Math.round(rng() * 1000) / 1000));
    const flat = () => `[${Array.from({ length: 16 }, value).join(',')}]`;
    const rows = () => `[${Array.from({ length: 4 }, () => `[${Array.from({ length: 4 }, value).join(',')}]`).join(',')}]`;
    // Mostly one form per body (a regular tensor), sometimes both (ragged: JSON.parse's way).
    const form = rng();
    const image = () => (form < 0.4 ? flat() : form < 0.8 ? rows() : rng() < 0.5 ? flat() : rows());
    return `{"instances":[${Array.from({ length: 1 + Math.floor(rng() * 3) }, image).join(',')}]}`;
  }

  function mutate(text: string, rng: () => number): string {
    const at = Math.floor(rng() * text.length);
    const ch = alphabet[Math.floor(rng() * alphabet.length)]!;
    const kind = rng();
    if (kind < 0.3) return text.slice(0, at) + text.slice(at + 1);
    if (kind < 0.6) return text.slice(0, at) + ch + text.slice(at);
    if (kind < 0.9) return text.slice(0, at) + ch + text.slice(at + 1);
    const end = Math.min(text.length, at + 1 + Math.floor(rng() * 12));
    return text.slice(0, end) + text.slice(at, end) + text.slice(end);
  }

  let readDense = 0;
  async function outcome(text: string, dense: boolean): Promise<unknown> {
    let body: unknown;
    try {
      body = dense ? await parse(text, tfSites) : JSON.parse(text);
    } catch {
      return 'invalid_json';
    }
    if ((body as Record<string, unknown> | null)?.instances instanceof DenseTensor) readDense++;
    try {
      const b = imagesFromNested((body as Record<string, unknown> | null)?.instances, 'instances', 2, shape);
      return { count: b.count, pixels: Array.from(b.pixels) };
    } catch (e) {
      if (!(e instanceof ServingError)) throw e;
      return { code: e.code, message: e.message };
    }
  }

  it('gives the same pixels or the same refusal as JSON.parse and the walk, for 5,000 mutated bodies', async () => {
    const rng = createRng(29);
    const seen = new Set<string>();
    for (let k = 0; k < 5000; k++) {
      let text = randomBody(rng);
      for (let m = Math.floor(rng() * 3); m > 0; m--) text = mutate(text, rng);
      const dense = await outcome(text, true);
      expect(dense, text).toEqual(await outcome(text, false));
      seen.add(typeof dense === 'string' ? dense : 'code' in (dense as object) ? (dense as { code: string }).code : 'pixels');
    }
    // Most bodies had their tensor read dense, and the mutations reach every kind of answer: images, bad JSON, and the walk's refusals.
    expect(readDense).toBeGreaterThan(1500);
    expect([...seen].sort()).toEqual(expect.arrayContaining(['batch_too_large', 'invalid_json', 'invalid_shape', 'out_of_range', 'pixels']));
  });
});
