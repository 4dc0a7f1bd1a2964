import { createRequire } from 'node:module';
import type { PNG } from 'pngjs';
import type JpegJs from 'jpeg-js';
import { REFERENCE_CNN } from '../core/model-spec.js';
import { InvalidInput, TooLarge, UnsupportedMedia } from './errors.js';

/** MNIST digits fill a 20-pixel box inside their 28-pixel canvas: the same share (5/7) of the model's input. */
const digitBox = (h: number, w: number) => Math.round((Math.min(h, w) * 5) / 7);
/** jpeg-js decodes on the event loop (~160 ms per megapixel on a busy machine): larger JPEGs are refused before decoding. */
export const MAX_JPEG_PIXELS = 1024 * 1024;

export type InvertMode = 'auto' | 'true' | 'false';
export type Preprocess = 'mnist' | 'resize';
export type ImageKind = 'png' | 'jpeg';

export interface RawImage {
  width: number;
  height: number;
  /** Grayscale 0..1, row-major. */
  gray: Float32Array;
  /** Red, green, blue 0..1 per pixel, row-major (transparency composited on white), for colour models. */
  rgb?: Float32Array;
}

export interface ImageHeader {
  kind: ImageKind;
  width: number;
  height: number;
}

const undecodable = (msg: string) => new InvalidInput('undecodable_image', msg);

export function sniffImageType(bytes: Buffer): ImageKind | undefined {
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/**
 * The image's type and declared size, read from its header without decoding anything, so a
 * small file declaring a huge canvas (a decompression bomb) is refused before it costs memory.
 */
export function readImageHeader(bytes: Buffer): ImageHeader {
  const kind = sniffImageType(bytes);
  if (!kind) throw new UnsupportedMedia('unsupported_image', 'image is neither PNG nor JPEG');
  const size = kind === 'png' ? pngSize(bytes) : jpegSize(bytes);
  if (size.width === 0 || size.height === 0) throw undecodable(`${kind.toUpperCase()} declares an empty image`);
  return { kind, ...size };
}

function pngSize(bytes: Buffer): { width: number; height: number } {
  // Signature (8), IHDR length (4) and type (4), then width and height.
  if (bytes.length < 24 || bytes.toString('latin1', 12, 16) !== 'IHDR') throw undecodable('PNG is truncated or has no IHDR header');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

function jpegSize(bytes: Buffer): { width: number; height: number } {
  // Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT, JPG, DAC).
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) throw undecodable('JPEG markers are malformed');
    const marker = bytes[at + 1]!;
    if (marker === 0xff) {
      at++;
      continue;
    }
    const length = bytes.readUInt16BE(at + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (at + 9 > bytes.length) break;
      return { height: bytes.readUInt16BE(at + 5), width: bytes.readUInt16BE(at + 7) };
    }
    if (marker === 0xda || length < 2) break; // image data before any frame header
    at += 2 + length;
  }
  throw undecodable('JPEG is truncated: no frame header');
}

/** Checks a header against the pixels still allowed for this request; returns the pixels it will use. */
export function checkPixels(header: ImageHeader, allowed: number): number {
  const pixels = header.width * header.height;
  const what = `${header.kind.toUpperCase()} is ${header.width}x${header.height} (${(pixels / 1e6).toFixed(1)} Mpx)`;
  if (header.kind === 'jpeg' && pixels > MAX_JPEG_PIXELS) throw new TooLarge('image_too_large', `${what}; JPEGs up to ${MAX_JPEG_PIXELS / 2 ** 20} Mpx are decoded here: downscale it`);
  if (pixels > allowed) throw new TooLarge('image_too_large', `${what}; this request may decode ${(Math.max(0, allowed) / 1e6).toFixed(1)} Mpx more: send fewer or smaller images`);
  return pixels;
}

/** Decodes a PNG or JPEG whose header has been checked. PNG rows inflate off the event loop. */
export async function decodeImage(bytes: Buffer, header: ImageHeader = readImageHeader(bytes)): Promise<RawImage> {
  return header.kind === 'png' ? decodePng(bytes) : decodeJpeg(bytes, header);
}

// The decoders load with the first image, not at start: a cold start's first prediction never needs them.
const require = createRequire(import.meta.url);
let decoders: { PNG: typeof PNG; jpeg: typeof JpegJs } | undefined;
const imageDecoders = () => (decoders ??= { PNG: (require('pngjs') as typeof import('pngjs')).PNG, jpeg: require('jpeg-js') as typeof JpegJs });

async function decodePng(bytes: Buffer): Promise<RawImage> {
  let png: PNG;
  try {
    const { PNG } = imageDecoders();
    png = await new Promise<PNG>((resolve, reject) => new PNG().parse(bytes, (err, out) => (err ? reject(err) : resolve(out))));
  } catch (e) {
    throw undecodable(`PNG could not be decoded: ${(e as Error).message}`);
  }
  return { width: png.width, height: png.height, gray: toGray(png.data, png.width * png.height), rgb: toRgb(png.data, png.width * png.height) };
}

function decodeJpeg(bytes: Buffer, header: ImageHeader): RawImage {
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = imageDecoders().jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: (header.width * header.height) / 1e6 + 0.01, maxMemoryUsageInMB: 64 });
  } catch (e) {
    const msg = (e as Error).message;
    if (/maxResolutionInMP|maxMemoryUsage/i.test(msg)) throw new TooLarge('image_too_large', `JPEG is too large: ${msg}`);
    throw undecodable(`JPEG could not be decoded: ${msg}`);
  }
  return { width: img.width, height: img.height, gray: toGray(img.data, img.width * img.height), rgb: toRgb(img.data, img.width * img.height) };
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

function toRgb(rgba: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3]! / 255;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = (rgba[i * 4 + c]! / 255) * a + (1 - a);
  }
  return out;
}

/** An RGB image resized to HxWx3 (each channel area-averaged), inverted when asked. */
function rgbInput(img: RawImage, invert: boolean, h: number, w: number): Float32Array {
  const rgb = img.rgb ?? Float32Array.from({ length: img.gray.length * 3 }, (_, i) => img.gray[Math.floor(i / 3)]!);
  const out = new Float32Array(h * w * 3);
  for (let c = 0; c < 3; c++) {
    const plane = new Float32Array(img.width * img.height);
    for (let i = 0; i < plane.length; i++) plane[i] = invert ? 1 - rgb[i * 3 + c]! : rgb[i * 3 + c]!;
    const small = resizeArea(plane, img.width, img.height, w, h);
    for (let i = 0; i < small.length; i++) out[i * 3 + c] = small[i]!;
  }
  return out;
}

/**
 * Turns any photo or drawing into an MNIST-like input of the model's size: white-on-black (inverting
 * dark-on-light images when asked or when the border is light), and with `mnist`
 * preprocessing the digit's bounding box scaled into 20x20 (of 28x28) and centred by its centre of
 * mass, which is how the MNIST digits themselves were made.
 */
export function toModelInput(
  img: RawImage,
  invert: InvertMode = 'auto',
  preprocess: Preprocess = 'mnist',
  opts: { consume?: boolean; shape?: readonly [number, number, number] } = {},
): Float32Array {
  const [SIDE_H, SIDE_W, channels] = opts.shape ?? REFERENCE_CNN.inputShape;
  const shouldInvert = invert === 'true' || (invert === 'auto' && borderMean(img) > 0.5);
  // A colour model takes the photo as it is, resized; digit centring is a grayscale (MNIST) rule.
  if (channels === 3) return rgbInput(img, shouldInvert, SIDE_H, SIDE_W);
  // With `consume` (the caller's image is its own to give) inversion works in place: a copy of a large image would double its cost.
  const fg = opts.consume ? img.gray : img.gray.slice();
  if (shouldInvert) for (let i = 0; i < fg.length; i++) fg[i] = 1 - fg[i]!;
  if (preprocess === 'resize') return resizeArea(fg, img.width, img.height, SIDE_W, SIDE_H);
  return centreDigit(fg, img.width, img.height, SIDE_H, SIDE_W);
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

function centreDigit(fg: Float32Array, w: number, h: number, SIDE_H: number, SIDE_W: number): Float32Array {
  const PIXELS = SIDE_H * SIDE_W;
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
  const scale = digitBox(SIDE_H, SIDE_W) / Math.max(bw, bh);
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
  const ox = Math.round(SIDE_W / 2 - (mass ? cx / mass : tw / 2));
  const oy = Math.round(SIDE_H / 2 - (mass ? cy / mass : th / 2));
  const out = new Float32Array(PIXELS);
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
    const tx = x + ox;
    const ty = y + oy;
    if (tx >= 0 && tx < SIDE_W && ty >= 0 && ty < SIDE_H) out[ty * SIDE_W + tx] = Math.min(1, small[y * tw + x]!);
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
