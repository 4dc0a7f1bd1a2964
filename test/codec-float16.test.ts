import { describe, it, expect } from 'vitest';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../services/core/codec.js';

// The IEEE half-precision conversions the codec's float16 dtype rests on; the codec itself: codec.test.ts.
describe('float16 bit conversion', () => {
  it('converts known values', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff], // largest half
      [-65504, 0xfbff],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [1 / 3, 0x3555],
    ];
    for (const [value, bits] of cases) expect(float32ToFloat16Bits(value), `${value}`).toBe(bits);
  });

  it('rounds to nearest, ties to even, in normals and subnormals', () => {
    const ulp = 2 ** -10; // spacing of halves in [1, 2)
    expect(float32ToFloat16Bits(1 + ulp / 2)).toBe(0x3c00); // tie, 0x3c00 is even
    expect(float32ToFloat16Bits(1 + ulp / 2 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(float32ToFloat16Bits(1 + ulp / 2 - 2 ** -20)).toBe(0x3c00); // just below
    expect(float32ToFloat16Bits(1 + 1.5 * ulp)).toBe(0x3c02); // tie between 0x3c01 (odd) and 0x3c02
    expect(float32ToFloat16Bits(2 - ulp / 4)).toBe(0x4000); // mantissa carry into the exponent
    const sub = 2 ** -24;
    expect(float32ToFloat16Bits(sub / 2)).toBe(0x0000); // tie between 0 and 1 -> 0
    expect(float32ToFloat16Bits(sub / 2 + 2 ** -34)).toBe(0x0001);
    expect(float32ToFloat16Bits(1.5 * sub)).toBe(0x0002); // tie between 1 and 2 -> 2
    expect(float32ToFloat16Bits(2.5 * sub)).toBe(0x0002); // tie between 2 and 3 -> 2
    expect(float32ToFloat16Bits(2 ** -14 - sub / 2)).toBe(0x0400); // subnormal rounds up into the normals
    expect(float32ToFloat16Bits(2 ** -26)).toBe(0x0000); // underflow keeps the sign
    expect(float32ToFloat16Bits(-(2 ** -26))).toBe(0x8000);
  });

  it('overflows to infinity beyond the largest half', () => {
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff); // below the tie
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // tie rounds to even = Inf
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-1e6)).toBe(0xfc00);
    expect(float32ToFloat16Bits(Infinity)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    const nan = float32ToFloat16Bits(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x3ff).not.toBe(0);
  });

  it('decodes known bit patterns', () => {
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x0400)).toBe(2 ** -14);
    expect(float16BitsToFloat32(0x3555)).toBe(0.333251953125);
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(float16BitsToFloat32(0xfc00)).toBe(-Infinity);
    expect(float16BitsToFloat32(0x7e00)).toBeNaN();
  });

  it('round-trips every non-NaN half bit pattern exactly', () => {
    const bad: number[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const isNaN = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
      if (isNaN) continue;
      if (float32ToFloat16Bits(float16BitsToFloat32(bits)) !== bits) bad.push(bits);
    }
    expect(bad).toEqual([]);
  });
});
