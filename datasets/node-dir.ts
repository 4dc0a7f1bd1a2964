import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { resizeArea } from '../services/serving/images.js';
import { IdxFormatError, readIdxPair } from './idx.js';
import type { ImageSet } from './types.js';

/**
 * A node's own data from a directory, shaped for one model input [H, W, C]: IDX files, CSV
 * (label then H·W·C values 0..255 per line), or image folders (<class>/<file>.png|jpg, the
 * class an integer name or the folder's rank in sorted order). Images are resized to HxW
 * (grayscale by luminance, RGB as is). A file or line that cannot be read is skipped and
 * counted; a directory that cannot be read at all is an error naming it.
 */
export interface NodeDirData {
  set: ImageSet;
  skipped: number;
  source: string;
  format: 'idx' | 'csv' | 'images';
  /** Image folders: the class names in label order. */
  classNames?: string[];
}

export class NodeDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeDataError';
  }
}

const IMAGE_FILE = /\.(png|jpe?g)$/i;
const MAX_SAMPLES = 2_000_000;

export function loadNodeDir(dir: string, shape: readonly [number, number, number]): NodeDirData {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new NodeDataError(`${dir}: no such directory (the node's data directory)`);
  const names = readdirSync(dir).sort();
  const images = names.find((n) => /images[.-]idx3-ubyte(\.gz)?$/.test(n) && n.startsWith('train')) ?? names.find((n) => /images[.-]idx3-ubyte(\.gz)?$/.test(n));
  if (images) return loadIdx(dir, images, names);
  const csv = names.filter((n) => n.toLowerCase().endsWith('.csv'));
  if (csv.length) return loadCsv(dir, csv, shape);
  return loadImageFolders(dir, names, shape);
}

function loadIdx(dir: string, images: string, names: string[]): NodeDirData {
  const labels = names.find((n) => n === images.replace('images', 'labels').replace('idx3', 'idx1'));
  if (!labels) throw new NodeDataError(`${join(dir, images)}: no matching labels file (${images.replace('images', 'labels').replace('idx3', 'idx1')})`);
  try {
    return { set: readIdxPair(join(dir, images), join(dir, labels), 256), skipped: 0, source: dir, format: 'idx' };
  } catch (e) {
    if (e instanceof IdxFormatError) throw new NodeDataError(e.message);
    throw e;
  }
}

/** Samples gathered one at a time, joined into one flat set at the end. */
function emptySet(shape: readonly [number, number, number]) {
  const samples: Float32Array[] = [];
  const labels: number[] = [];
  return {
    labels,
    add(label: number, values: Float32Array) {
      labels.push(label);
      samples.push(values);
    },
    done(classes: number): ImageSet {
      const size = shape[0] * shape[1] * shape[2];
      const images = new Float32Array(samples.length * size);
      samples.forEach((s, i) => images.set(s, i * size));
      return { images, labels: Uint8Array.from(labels), count: labels.length, rows: shape[0], cols: shape[1], channels: shape[2], numClasses: classes };
    },
  };
}

function loadCsv(dir: string, files: string[], shape: readonly [number, number, number]): NodeDirData {
  const size = shape[0] * shape[1] * shape[2];
  const out = emptySet(shape);
  let skipped = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(join(dir, file), 'utf8');
    } catch {
      skipped++;
      continue;
    }
    text.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      const cells = line.split(',').map(Number);
      if (i === 0 && Number.isNaN(cells[0])) return; // a header line
      const ok = cells.length === size + 1 && Number.isInteger(cells[0]) && cells[0]! >= 0 && cells[0]! < 256 && cells.slice(1).every((v) => v >= 0 && v <= 255);
      if (!ok || out.labels.length >= MAX_SAMPLES) return void skipped++;
      out.add(cells[0]!, Float32Array.from(cells.slice(1), (v) => v / 255));
    });
  }
  const classes = out.labels.reduce((m, l) => Math.max(m, l + 1), 0);
  return { set: out.done(classes), skipped, source: dir, format: 'csv' };
}

/** RGBA bytes of a PNG or JPEG, or undefined when the file is not one that decodes. */
function decodeRgba(bytes: Buffer): { width: number; height: number; data: Uint8Array } | undefined {
  try {
    if (bytes[0] === 0x89 && bytes.toString('latin1', 1, 4) === 'PNG') {
      const png = PNG.sync.read(bytes);
      return { width: png.width, height: png.height, data: png.data };
    }
    if (bytes[0] === 0xff && bytes[1] === 0xd8) return jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: 16, maxMemoryUsageInMB: 256 });
  } catch {
    return undefined;
  }
  return undefined;
}

/** One decoded image as H·W·C values in [0,1]: each channel (or luminance) area-resized. */
function toInput(img: { width: number; height: number; data: Uint8Array }, [h, w, c]: readonly [number, number, number]): Float32Array {
  const n = img.width * img.height;
  const planes = Array.from({ length: c }, () => new Float32Array(n));
  for (let i = 0; i < n; i++) {
    const [r, g, b] = [img.data[i * 4]! / 255, img.data[i * 4 + 1]! / 255, img.data[i * 4 + 2]! / 255];
    if (c === 1) planes[0]![i] = 0.299 * r + 0.587 * g + 0.114 * b;
    else [r, g, b].forEach((v, k) => (planes[k]![i] = v));
  }
  const out = new Float32Array(h * w * c);
  planes.forEach((p, k) => {
    const small = img.width === w && img.height === h ? p : resizeArea(p, img.width, img.height, w, h);
    for (let i = 0; i < small.length; i++) out[i * c + k] = small[i]!;
  });
  return out;
}

function loadImageFolders(dir: string, names: string[], shape: readonly [number, number, number]): NodeDirData {
  const classDirs = names.filter((n) => statSync(join(dir, n)).isDirectory());
  if (classDirs.length === 0) throw new NodeDataError(`${dir}: no IDX files, no .csv files and no class folders (<class>/<image>.png|jpg)`);
  const numeric = classDirs.every((n) => /^\d{1,3}$/.test(n));
  const labelOf = (n: string, i: number) => (numeric ? Number(n) : i);
  const out = emptySet(shape);
  let skipped = 0;
  classDirs.forEach((name, i) => {
    for (const file of readdirSync(join(dir, name)).sort()) {
      if (!IMAGE_FILE.test(file)) continue;
      let img;
      try {
        img = decodeRgba(readFileSync(join(dir, name, file)));
      } catch {
        img = undefined;
      }
      if (!img || labelOf(name, i) > 255 || out.labels.length >= MAX_SAMPLES) {
        skipped++;
        continue;
      }
      out.add(labelOf(name, i), toInput(img, shape));
    }
  });
  const classes = numeric ? Math.max(0, ...classDirs.map(Number)) + 1 : classDirs.length;
  return { set: out.done(classes), skipped, source: dir, format: 'images', classNames: numeric ? undefined : classDirs };
}
