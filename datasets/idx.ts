import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import type { ImageSet, TrainTestSplit } from './types.js';

/** Thrown for any file that is not a well-formed IDX file of the expected kind. */
export class IdxFormatError extends Error {
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'IdxFormatError';
  }
}

const UBYTE = 0x08;

function readMaybeGzipped(file: string): Buffer {
  const raw = readFileSync(file);
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return gunzipSync(raw);
    } catch (e) {
      throw new IdxFormatError(file, `gzip data is corrupt or truncated (${(e as Error).message})`);
    }
  }
  return raw;
}

interface IdxHeader {
  dims: number[];
  dataOffset: number;
}

function parseHeader(file: string, buf: Buffer, expectedDims: number): IdxHeader {
  if (buf.length < 4) throw new IdxFormatError(file, `file is ${buf.length} bytes, too short for an IDX header`);
  if (buf[0] !== 0 || buf[1] !== 0) throw new IdxFormatError(file, 'bad magic number: first two bytes must be zero (not an IDX file?)');
  if (buf[2] !== UBYTE) throw new IdxFormatError(file, `unsupported element type 0x${buf[2]!.toString(16)}; only unsigned byte (0x08) is supported`);
  const ndims = buf[3]!;
  if (ndims !== expectedDims) throw new IdxFormatError(file, `expected ${expectedDims} dimension(s), header says ${ndims}`);
  const dataOffset = 4 + 4 * ndims;
  if (buf.length < dataOffset) throw new IdxFormatError(file, 'truncated header');
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  const expectedBytes = dims.reduce((a, b) => a * b, 1);
  const actual = buf.length - dataOffset;
  if (actual < expectedBytes) throw new IdxFormatError(file, `truncated: header declares ${expectedBytes} data bytes, file has ${actual}`);
  if (actual > expectedBytes) throw new IdxFormatError(file, `${actual - expectedBytes} unexpected trailing bytes after the data`);
  return { dims, dataOffset };
}

export function readIdxImages(file: string): { pixels: Float32Array; count: number; rows: number; cols: number } {
  const buf = readMaybeGzipped(file);
  const { dims, dataOffset } = parseHeader(file, buf, 3);
  const [count, rows, cols] = dims as [number, number, number];
  if (rows === 0 || cols === 0) throw new IdxFormatError(file, `image dimensions ${rows}x${cols} are empty`);
  const pixels = new Float32Array(count * rows * cols);
  for (let i = 0; i < pixels.length; i++) pixels[i] = buf[dataOffset + i]! / 255;
  return { pixels, count, rows, cols };
}

export function readIdxLabels(file: string, numClasses = 10): Uint8Array {
  const buf = readMaybeGzipped(file);
  const { dims, dataOffset } = parseHeader(file, buf, 1);
  const labels = new Uint8Array(buf.subarray(dataOffset, dataOffset + dims[0]!));
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]! >= numClasses) throw new IdxFormatError(file, `label ${labels[i]} at index ${i} is outside 0..${numClasses - 1}`);
  }
  return labels;
}

export function readIdxPair(imagesFile: string, labelsFile: string, numClasses = 10): ImageSet {
  const img = readIdxImages(imagesFile);
  const labels = readIdxLabels(labelsFile, numClasses);
  if (labels.length !== img.count) {
    throw new IdxFormatError(labelsFile, `${labels.length} labels but ${imagesFile} holds ${img.count} images`);
  }
  return { images: img.pixels, labels, count: img.count, rows: img.rows, cols: img.cols, numClasses };
}

/** Finds `<prefix>-<kind>-idx?-ubyte[.gz]`, accepting the `.`/`-` variants seen in the wild. */
function findIdxFile(dir: string, prefix: string, kind: 'images' | 'labels'): string {
  const dims = kind === 'images' ? 3 : 1;
  const candidates = [`${prefix}-${kind}-idx${dims}-ubyte`, `${prefix}-${kind}.idx${dims}-ubyte`];
  const names = existsSync(dir) ? readdirSync(dir) : [];
  for (const c of candidates) {
    for (const name of [c, `${c}.gz`]) if (names.includes(name)) return join(dir, name);
  }
  throw new IdxFormatError(dir, `no ${candidates[0]}[.gz] (or ${candidates[1]}[.gz]) in this directory`);
}

/** Reads the standard four-file MNIST layout (train-* and t10k-*) from a directory. */
export function loadIdxDir(dir: string, name = `idx:${dir}`): TrainTestSplit {
  return {
    name,
    train: readIdxPair(findIdxFile(dir, 'train', 'images'), findIdxFile(dir, 'train', 'labels')),
    test: readIdxPair(findIdxFile(dir, 't10k', 'images'), findIdxFile(dir, 't10k', 'labels')),
  };
}

/** Writes an IDX file; the tests use it to make small good and broken files. */
export function encodeIdx(dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = UBYTE;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}
