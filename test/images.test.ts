import { describe, expect, it } from 'vitest';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { MAX_JPEG_PIXELS, checkPixels, decodeImage, readImageHeader, resizeArea, sniffImageType, toModelInput, type RawImage } from '../services/serving/images.js';
import { asyncError, httpError } from './helpers/serving-error.js';

const PIXELS = 784;

function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number, number]): Buffer {
  const p = new PNG({ width, height });
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) p.data.set(pixel(x, y), (y * width + x) * 4);
  return PNG.sync.write(p);
}

function raw(width: number, height: number, value: (x: number, y: number) => number): RawImage {
  const gray = new Float32Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) gray[y * width + x] = value(x, y);
  return { width, height, gray };
}
/** Header check, then decode, as the upload route does. */
const decode = (bytes: Buffer, budget = 4096 * 4096) => {
  const header = readImageHeader(bytes);
  checkPixels(header, budget);
  return decodeImage(bytes, header);
};

/** The intensity-weighted mean position of a side x side image (the test's own oracle, not images.ts's loop). */
const centreOfMass = (img: Float32Array, side = 28) => {
  const at = Array.from(img, (v, i) => ({ v, x: i % side, y: Math.floor(i / side) }));
  const mass = at.reduce((s, p) => s + p.v, 0);
  return { mass, x: at.reduce((s, p) => s + p.v * p.x, 0) / mass, y: at.reduce((s, p) => s + p.v * p.y, 0) / mass };
};

const bbox = (img: Float32Array, side = 28, threshold = 0.2) => {
  let x0 = side, y0 = side, x1 = -1, y1 = -1;
  for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) {
    if (img[y * side + x]! > threshold) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  return { x0, y0, x1, y1, w: x1 - x0 + 1, h: y1 - y0 + 1 };
};

describe('sniffImageType', () => {
  it('recognises PNG and JPEG by their magic bytes only', () => {
    expect(sniffImageType(png(2, 2, () => [0, 0, 0, 255]))).toBe('png');
    expect(sniffImageType(Buffer.from(jpeg.encode({ data: Buffer.alloc(16 * 4, 200), width: 4, height: 4 }, 90).data))).toBe('jpeg');
    expect(sniffImageType(Buffer.from('GIF89a......'))).toBeUndefined();
    expect(sniffImageType(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a]))).toBeUndefined(); // 7 of the 8 PNG bytes
    expect(sniffImageType(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0b]))).toBeUndefined();
    expect(sniffImageType(Buffer.from([0xff, 0xd8]))).toBeUndefined();
    expect(sniffImageType(Buffer.from([0xff, 0xd8, 0xff]))).toBe('jpeg');
    expect(sniffImageType(Buffer.alloc(0))).toBeUndefined();
  });
});

describe('decodeImage', () => {
  it('turns RGBA into luminance in [0,1], transparent pixels into white', async () => {
    const img = await decodeImage(png(4, 1, (x) => [[0, 0, 0, 255], [255, 255, 255, 255], [255, 0, 0, 255], [0, 0, 0, 0]][x] as [number, number, number, number]));
    expect(img.width).toBe(4);
    expect(img.height).toBe(1);
    expect(img.gray[0]).toBeCloseTo(0, 6);
    expect(img.gray[1]).toBeCloseTo(1, 6);
    expect(img.gray[2]).toBeCloseTo(0.299, 3);
    expect(img.gray[3]).toBeCloseTo(1, 6);
  });

  it('half-transparent black is mid gray', async () => {
    const img = await decodeImage(png(1, 1, () => [0, 0, 0, 128]));
    expect(img.gray[0]).toBeCloseTo(1 - 128 / 255, 3);
  });

  it('decodes a JPEG to about the same grays', async () => {
    const data = Buffer.alloc(8 * 8 * 4);
    for (let i = 0; i < 64; i++) data.set(i < 32 ? [20, 20, 20, 255] : [230, 230, 230, 255], i * 4);
    const img = await decodeImage(Buffer.from(jpeg.encode({ data, width: 8, height: 8 }, 100).data));
    expect([img.width, img.height]).toEqual([8, 8]);
    expect(img.gray[0]).toBeCloseTo(20 / 255, 1);
    expect(img.gray[63]).toBeCloseTo(230 / 255, 1);
  });

  it('refuses images that are not PNG or JPEG (415), undecodable ones (400) and, from the header alone, ones over the pixel budget (413)', async () => {
    expect(httpError(() => readImageHeader(Buffer.from('hello world'))).status).toBe(415);
    const good = png(28, 28, () => [0, 0, 0, 255]);
    expect(httpError(() => readImageHeader(good.subarray(0, 20)))).toMatchObject({ status: 400, code: 'undecodable_image' });
    expect(await asyncError(decode(Buffer.concat([good.subarray(0, 33), Buffer.alloc(40, 3)])))).toMatchObject({ status: 400, code: 'undecodable_image' });
    const zero = Buffer.from(good);
    zero.writeUInt32BE(0, 16);
    expect(httpError(() => readImageHeader(zero))).toMatchObject({ status: 400, code: 'undecodable_image' });
    for (const [w, h] of [[100_000, 100_000], [4097, 4096], [10, 0x7fffffff]]) {
      const huge = Buffer.from(good);
      huge.writeUInt32BE(w!, 16);
      huge.writeUInt32BE(h!, 20);
      expect(readImageHeader(huge)).toEqual({ kind: 'png', width: w, height: h });
      expect(httpError(() => checkPixels(readImageHeader(huge), 4096 * 4096))).toMatchObject({ status: 413, code: 'image_too_large' });
    }
    // The budget is for the whole request: what earlier images used is no longer allowed.
    expect(checkPixels(readImageHeader(good), 28 * 28)).toBe(28 * 28);
    expect(httpError(() => checkPixels(readImageHeader(good), 28 * 28 - 1))).toMatchObject({ status: 413, code: 'image_too_large' });
  });

  it('reads the size of a JPEG from its frame header; refuses one over the JPEG limit (413) and a broken one (400)', async () => {
    const small = Buffer.from(jpeg.encode({ data: Buffer.alloc(8 * 6 * 4, 100), width: 8, height: 6 }, 80).data);
    expect(readImageHeader(small)).toEqual({ kind: 'jpeg', width: 8, height: 6 });
    const huge = Buffer.from(small);
    let sof = -1;
    for (let i = 2; i < huge.length - 1; i++) if (huge[i] === 0xff && huge[i + 1] === 0xc0) { sof = i; break; }
    expect(sof).toBeGreaterThan(0);
    huge.writeUInt16BE(65535, sof + 5); // height
    huge.writeUInt16BE(65535, sof + 7); // width
    expect(httpError(() => checkPixels(readImageHeader(huge), Infinity))).toMatchObject({ status: 413, code: 'image_too_large' });
    huge.writeUInt16BE(1025, sof + 5);
    huge.writeUInt16BE(1024, sof + 7);
    expect(1025 * 1024).toBeGreaterThan(MAX_JPEG_PIXELS);
    expect(httpError(() => checkPixels(readImageHeader(huge), Infinity))).toMatchObject({ status: 413, code: 'image_too_large' });
    expect(httpError(() => readImageHeader(small.subarray(0, 30)))).toMatchObject({ status: 400, code: 'undecodable_image' });
    expect(await asyncError(decode(Buffer.concat([small.subarray(0, small.length - 40)])))).toMatchObject({ status: 400, code: 'undecodable_image' });
  });
});

describe('resizeArea', () => {
  it('averages 2x2 boxes when halving', () => {
    const src = Float32Array.from([
      1, 3, 5, 7,
      1, 3, 5, 7,
      0, 0, 1, 1,
      0, 0, 0, 1,
    ]);
    expect(Array.from(resizeArea(src, 4, 4, 2, 2))).toEqual([2, 6, 0, 0.75]);
  });

  it('weights partial pixels by their area (3 → 2)', () => {
    const out = resizeArea(Float32Array.from([0, 1, 0.5]), 3, 1, 2, 1);
    expect(out[0]).toBeCloseTo((0 * 1 + 1 * 0.5) / 1.5, 6);
    expect(out[1]).toBeCloseTo((1 * 0.5 + 0.5 * 1) / 1.5, 6);
  });

  it('is the identity at the same size and replicates pixels when doubling', () => {
    const src = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    expect(Array.from(resizeArea(src, 3, 2, 3, 2))).toEqual(Array.from(src));
    const up = resizeArea(Float32Array.from([0, 1, 0.25, 0.5]), 2, 2, 4, 4);
    expect(Array.from(up)).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 0.25, 0.25, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5]);
  });

  it('keeps the mean of the image when shrinking by any factor', () => {
    const src = Float32Array.from({ length: 37 * 23 }, (_, i) => ((i * 7919) % 101) / 100);
    const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    const out = resizeArea(src, 37, 23, 28, 28);
    expect(out.length).toBe(784);
    // Not exact (28 rows from 23 enlarges), but close; and every value stays in range.
    expect(mean(out)).toBeCloseTo(mean(src), 1);
    expect(Math.max(...out)).toBeLessThanOrEqual(1);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(0);
    const shrink = resizeArea(src, 37, 23, 37, 1);
    expect(mean(shrink)).toBeCloseTo(mean(src), 5);
  });
});

describe('toModelInput', () => {
  // A white 6x10 bar on black, off in the top-left corner of a 40x40 image.
  const bar = raw(40, 40, (x, y) => (x >= 2 && x < 8 && y >= 3 && y < 13 ? 1 : 0));

  it('crops the digit, scales its longer side to 20 pixels and centres its mass in 28x28', () => {
    const out = toModelInput(bar, 'false', 'mnist');
    expect(out.length).toBe(PIXELS);
    const b = bbox(out);
    expect(b.h).toBe(20);
    expect(b.w).toBe(12);
    const com = centreOfMass(out);
    expect(Math.abs(com.x - 14)).toBeLessThanOrEqual(1);
    expect(Math.abs(com.y - 14)).toBeLessThanOrEqual(1);
    expect(Math.max(...out)).toBeLessThanOrEqual(1);
  });

  it('gives the same input wherever the digit sits in the picture', () => {
    const moved = raw(40, 40, (x, y) => (x >= 30 && x < 36 && y >= 25 && y < 35 ? 1 : 0));
    expect(Array.from(toModelInput(moved, 'false'))).toEqual(Array.from(toModelInput(bar, 'false')));
  });

  it('auto-inverts dark-on-light pictures (light border) and leaves white-on-black ones', () => {
    const dark = raw(40, 40, (x, y) => 1 - bar.gray[y * 40 + x]!);
    expect(Array.from(toModelInput(dark, 'auto'))).toEqual(Array.from(toModelInput(bar, 'auto')));
    expect(Array.from(toModelInput(bar, 'auto'))).toEqual(Array.from(toModelInput(bar, 'false')));
    // Forced inversion of a white-on-black picture gives a big light blob, not the bar.
    expect(Array.from(toModelInput(bar, 'true'))).not.toEqual(Array.from(toModelInput(bar, 'false')));
    // invert=false on dark-on-light keeps the light background as "ink".
    const kept = toModelInput(dark, 'false', 'resize');
    expect(kept[0]).toBeCloseTo(1, 5);
  });

  it('decides by the border: a light digit touching nothing, on a mid-dark page, is not inverted', () => {
    const gray = raw(30, 30, (x, y) => (x > 10 && x < 20 && y > 5 && y < 25 ? 0.95 : 0.4));
    const out = toModelInput(gray, 'auto', 'resize');
    expect(out[0]).toBeCloseTo(0.4, 5); // border mean 0.4 <= 0.5: not inverted
    const light = raw(30, 30, (x, y) => (x > 10 && x < 20 && y > 5 && y < 25 ? 0.05 : 0.6));
    expect(toModelInput(light, 'auto', 'resize')[0]).toBeCloseTo(0.4, 5); // border 0.6 > 0.5: inverted
  });

  it('resize mode maps a 28x28 picture onto itself and a 56x56 one onto its 2x2 means', () => {
    const src = raw(28, 28, (x, y) => ((x * 3 + y * 5) % 11) / 10);
    expect(Array.from(toModelInput(src, 'false', 'resize'))).toEqual(Array.from(src.gray));
    const big = raw(56, 56, (x, y) => src.gray[Math.floor(y / 2) * 28 + Math.floor(x / 2)]!);
    const out = toModelInput(big, 'false', 'resize');
    for (let i = 0; i < PIXELS; i++) expect(out[i]).toBeCloseTo(src.gray[i]!, 5);
  });

  it('returns all zeros for a blank picture', () => {
    expect(toModelInput(raw(10, 10, () => 0), 'auto').every((v) => v === 0)).toBe(true);
    expect(toModelInput(raw(10, 10, () => 1), 'auto').every((v) => v === 0)).toBe(true); // white page, inverted
  });
});
