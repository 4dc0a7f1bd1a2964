import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { HttpError, badRequest } from '../http/errors.js';
import { PIXELS } from '../core/model.js';

const SIDE = 28;
/** Refused before decoding: a tiny file can declare a huge canvas (decompression bombs). */
export const MAX_IMAGE_SIDE = 4096;

export type InvertMode = 'auto' | 'true' | 'false';
export type Preprocess = 'mnist' | 'resize';

export interface RawImage {
  width: number;
  height: number;
  /** Grayscale 0..1, row-major. */
  gray: Float32Array;
}

const unsupported = (msg: string) => new HttpError(415, 'unsupported_image', msg);
const tooBig = (w: number, h: number) => new HttpError(413, 'image_too_large', `image is ${w}x${h}; the limit is ${MAX_IMAGE_SIDE}x${MAX_IMAGE_SIDE}`);

export function sniffImageType(bytes: Buffer): 'png' | 'jpeg' | undefined {
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

export function decodeImage(bytes: Buffer): RawImage {
  const kind = sniffImageType(bytes);
  if (!kind) throw unsupported('image is neither PNG nor JPEG');
  return kind === 'png' ? decodePng(bytes) : decodeJpeg(bytes);
}

function decodePng(bytes: Buffer): RawImage {
  if (bytes.length < 24) throw badRequest('undecodable_image', 'PNG is truncated');
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  if (width === 0 || height === 0) throw badRequest('undecodable_image', 'PNG declares an empty image');
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE) throw tooBig(width, height);
  let png: PNG;
  try {
    png = PNG.sync.read(bytes);
  } catch (e) {
    throw badRequest('undecodable_image', `PNG could not be decoded: ${(e as Error).message}`);
  }
  return { width: png.width, height: png.height, gray: toGray(png.data, png.width * png.height) };
}

function decodeJpeg(bytes: Buffer): RawImage {
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: (MAX_IMAGE_SIDE * MAX_IMAGE_SIDE) / 1e6, maxMemoryUsageInMB: 256 });
  } catch (e) {
    const msg = (e as Error).message;
    if (/maxResolutionInMP|maxMemoryUsage/i.test(msg)) throw new HttpError(413, 'image_too_large', `JPEG is too large: ${msg}`);
    throw badRequest('undecodable_image', `JPEG could not be decoded: ${msg}`);
  }
  if (img.width > MAX_IMAGE_SIDE || img.height > MAX_IMAGE_SIDE) throw tooBig(img.width, img.height);
  return { width: img.width, height: img.height, gray: toGray(img.data, img.width * img.height) };
}

/** RGBA → luminance; transparent pixels count as background (white), as a drawing on a page would. */
function toGray(rgba: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3]! / 255;
    const lum = (0.299 * rgba[i * 4]! + 0.587 * rgba[i * 4 + 1]! + 0.114 * rgba[i * 4 + 2]!) / 255;
    out[i] = lum * a + (1 - a);
  }
  return out;
}

/**
 * Turns any photo or drawing into an MNIST-like 28x28 input: white-on-black (inverting
 * dark-on-light images when asked or when the border is light), and with `mnist`
 * preprocessing the digit's bounding box scaled into 20x20 and centred by its centre of
 * mass, which is how the MNIST digits themselves were made.
 */
export function toModelInput(img: RawImage, invert: InvertMode = 'auto', preprocess: Preprocess = 'mnist'): Float32Array {
  const shouldInvert = invert === 'true' || (invert === 'auto' && borderMean(img) > 0.5);
  const fg = shouldInvert ? img.gray.map((v) => 1 - v) : img.gray.slice();
  if (preprocess === 'resize') return resizeArea(fg, img.width, img.height, SIDE, SIDE);
  return centreDigit(fg, img.width, img.height);
}

function borderMean(img: RawImage): number {
  let sum = 0;
  let n = 0;
  for (let x = 0; x < img.width; x++) {
    sum += img.gray[x]! + img.gray[(img.height - 1) * img.width + x]!;
    n += 2;
  }
  for (let y = 0; y < img.height; y++) {
    sum += img.gray[y * img.width]! + img.gray[y * img.width + img.width - 1]!;
    n += 2;
  }
  return sum / n;
}

function centreDigit(fg: Float32Array, w: number, h: number): Float32Array {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (fg[y * w + x]! > 0.2) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) return new Float32Array(PIXELS); // blank image: nothing to centre
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const crop = new Float32Array(bw * bh);
  for (let y = 0; y < bh; y++) crop.set(fg.subarray((y0 + y) * w + x0, (y0 + y) * w + x0 + bw), y * bw);
  const scale = 20 / Math.max(bw, bh);
  const tw = Math.max(1, Math.round(bw * scale));
  const th = Math.max(1, Math.round(bh * scale));
  const small = resizeArea(crop, bw, bh, tw, th);
  let mass = 0, cx = 0, cy = 0;
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
    const v = small[y * tw + x]!;
    mass += v;
    cx += v * x;
    cy += v * y;
  }
  const ox = Math.round(SIDE / 2 - (mass ? cx / mass : tw / 2));
  const oy = Math.round(SIDE / 2 - (mass ? cy / mass : th / 2));
  const out = new Float32Array(PIXELS);
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
    const tx = x + ox;
    const ty = y + oy;
    if (tx >= 0 && tx < SIDE && ty >= 0 && ty < SIDE) out[ty * SIDE + tx] = Math.min(1, small[y * tw + x]!);
  }
  return out;
}

/** Area-weighted resampling: exact box averaging when shrinking, bilinear-like when enlarging. */
export function resizeArea(src: Float32Array, sw: number, sh: number, dw: number, dh: number): Float32Array {
  const out = new Float32Array(dw * dh);
  const sx = sw / dw;
  const sy = sh / dh;
  for (let dy = 0; dy < dh; dy++) {
    const fy0 = dy * sy;
    const fy1 = fy0 + sy;
    for (let dx = 0; dx < dw; dx++) {
      const fx0 = dx * sx;
      const fx1 = fx0 + sx;
      let sum = 0;
      let area = 0;
      for (let y = Math.floor(fy0); y < Math.min(sh, Math.ceil(fy1)); y++) {
        const wy = Math.min(fy1, y + 1) - Math.max(fy0, y);
        for (let x = Math.floor(fx0); x < Math.min(sw, Math.ceil(fx1)); x++) {
          const wx = Math.min(fx1, x + 1) - Math.max(fx0, x);
          sum += src[y * sw + x]! * wx * wy;
          area += wx * wy;
        }
      }
      out[dy * dw + dx] = area > 0 ? sum / area : 0;
    }
  }
  return out;
}
