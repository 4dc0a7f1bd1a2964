import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { IdxFormatError, encodeIdx, loadIdxDir, readIdxImages, readIdxLabels, readIdxPair } from '../datasets/idx.js';
import { labelHistogram } from '../datasets/types.js';
import { expectDigitSet, pixelRange } from './helpers/image-sets.js';

let root: string;
let n = 0;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'edgefl-idx-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

/** Writes bytes to a fresh file under the temp dir and returns its path. */
function write(bytes: Uint8Array, name = `f${n++}`): string {
  const file = join(root, name);
  writeFileSync(file, bytes);
  return file;
}

/** count images of rows x cols with distinct, position-dependent bytes. */
function imageBytes(count: number, rows: number, cols: number): Uint8Array {
  return Uint8Array.from({ length: count * rows * cols }, (_, i) => (i * 37 + 11) % 256);
}

function expectIdxError(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an IdxFormatError').toBeInstanceOf(IdxFormatError);
  expect((caught as Error).name).toBe('IdxFormatError');
  expect((caught as Error).message).toMatch(message);
}

describe('encodeIdx', () => {
  it('writes the documented header: two zero bytes, 0x08, ndims, big-endian sizes', () => {
    const buf = encodeIdx([2, 3, 4], imageBytes(2, 3, 4));
    expect([...buf.subarray(0, 4)]).toEqual([0, 0, 0x08, 3]);
    expect(buf.readUInt32BE(4)).toBe(2);
    expect(buf.readUInt32BE(8)).toBe(3);
    expect(buf.readUInt32BE(12)).toBe(4);
    expect(buf.length).toBe(16 + 24);
  });
});

describe('readIdxImages / readIdxLabels: good files', () => {
  for (const gz of [false, true]) {
    const kind = gz ? 'gzipped' : 'plain';
    it(`round-trips ${kind} images exactly as byte/255`, () => {
      const data = imageBytes(5, 3, 4);
      const raw = encodeIdx([5, 3, 4], data);
      const img = readIdxImages(write(gz ? gzipSync(raw) : raw));
      expect(img.count).toBe(5);
      expect(img.rows).toBe(3);
      expect(img.cols).toBe(4);
      expect(img.pixels).toBeInstanceOf(Float32Array);
      expect(img.pixels.length).toBe(data.length);
      for (let i = 0; i < data.length; i++) expect(img.pixels[i]).toBe(Math.fround(data[i]! / 255));
      // byte 0 and 255 land on the ends of [0, 1]
      const ends = readIdxImages(write(encodeIdx([1, 1, 2], Uint8Array.from([0, 255])))).pixels;
      expect([...ends]).toEqual([0, 1]);
    });

    it(`round-trips ${kind} labels exactly`, () => {
      const labels = Uint8Array.from([0, 9, 3, 3, 7, 1]);
      const raw = encodeIdx([labels.length], labels);
      const read = readIdxLabels(write(gz ? gzipSync(raw) : raw));
      expect(read).toBeInstanceOf(Uint8Array);
      expect([...read]).toEqual([...labels]);
    });
  }

  it('readIdxPair assembles an ImageSet', () => {
    const labels = Uint8Array.from([4, 2, 0]);
    const set = readIdxPair(write(encodeIdx([3, 2, 2], imageBytes(3, 2, 2))), write(gzipSync(encodeIdx([3], labels))));
    expect(set.count).toBe(3);
    expect(set.rows).toBe(2);
    expect(set.cols).toBe(2);
    expect(set.numClasses).toBe(10);
    expect(set.images.length).toBe(12);
    expect([...set.labels]).toEqual([4, 2, 0]);
  });

  it('honours a custom numClasses for labels', () => {
    const file = write(encodeIdx([3], Uint8Array.from([0, 1, 2])));
    expect([...readIdxLabels(file, 3)]).toEqual([0, 1, 2]);
    expectIdxError(() => readIdxLabels(file, 2), /label 2 at index 2 is outside 0\.\.1/);
  });
});

describe('readIdx*: broken files fail with IdxFormatError', () => {
  it('rejects a bad magic number', () => {
    const buf = encodeIdx([2, 2, 2], imageBytes(2, 2, 2));
    buf[0] = 0x12;
    const file = write(buf);
    expectIdxError(() => readIdxImages(file), /bad magic/);
    // the message names the file
    expectIdxError(() => readIdxImages(file), new RegExp(file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  });

  it('rejects a non-ubyte element type', () => {
    const buf = encodeIdx([2, 2, 2], imageBytes(2, 2, 2));
    buf[2] = 0x0d; // float
    expectIdxError(() => readIdxImages(write(buf)), /unsupported element type 0xd/);
  });

  it('rejects the wrong number of dimensions', () => {
    expectIdxError(() => readIdxImages(write(encodeIdx([8], new Uint8Array(8)))), /expected 3 dimension\(s\), header says 1/);
    expectIdxError(() => readIdxLabels(write(encodeIdx([2, 2, 2], new Uint8Array(8)))), /expected 1 dimension\(s\), header says 3/);
  });

  it('rejects files too short for a header', () => {
    expectIdxError(() => readIdxLabels(write(Uint8Array.from([0, 0]))), /too short/);
    expectIdxError(() => readIdxImages(write(Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 1]))), /truncated header/);
  });

  it('rejects truncated data, plain and gzipped', () => {
    const full = encodeIdx([3, 2, 2], imageBytes(3, 2, 2));
    const cut = full.subarray(0, full.length - 5);
    expectIdxError(() => readIdxImages(write(cut)), /truncated: header declares 12 data bytes, file has 7/);
    expectIdxError(() => readIdxImages(write(gzipSync(cut))), /truncated/);
  });

  it('rejects a gzip stream that is itself cut short', () => {
    const gz = gzipSync(encodeIdx([3, 2, 2], imageBytes(3, 2, 2)));
    expectIdxError(() => readIdxImages(write(gz.subarray(0, gz.length - 6))), /gzip data is corrupt or truncated/);
  });

  it('rejects trailing garbage', () => {
    const buf = Buffer.concat([encodeIdx([3], Uint8Array.from([1, 2, 3])), Buffer.from([9, 9])]);
    expectIdxError(() => readIdxLabels(write(buf)), /2 unexpected trailing bytes/);
  });

  it('rejects empty image dimensions', () => {
    expectIdxError(() => readIdxImages(write(encodeIdx([2, 0, 5], new Uint8Array(0)))), /empty/);
  });

  it('rejects a label outside 0..numClasses-1', () => {
    expectIdxError(() => readIdxLabels(write(encodeIdx([4], Uint8Array.from([0, 1, 10, 2])))), /label 10 at index 2 is outside 0\.\.9/);
  });

  it('rejects an image/label count mismatch', () => {
    const images = write(encodeIdx([3, 2, 2], imageBytes(3, 2, 2)));
    const labels = write(encodeIdx([2], Uint8Array.from([1, 2])));
    expectIdxError(() => readIdxPair(images, labels), /2 labels but .* holds 3 images/);
  });
});

describe('loadIdxDir', () => {
  function makeDir(files: Record<string, Buffer>): string {
    const dir = join(root, `dir${n++}`);
    mkdirSync(dir);
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
    return dir;
  }

  const trainLabels = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
  const testLabels = Uint8Array.from([9, 8, 7]);
  const trainImages = encodeIdx([12, 4, 3], imageBytes(12, 4, 3));
  const testImages = encodeIdx([3, 4, 3], imageBytes(3, 4, 3));

  it('reads the four-file layout, mixing gzipped and plain and the "." name variant', () => {
    const dir = makeDir({
      'train-images-idx3-ubyte.gz': gzipSync(trainImages),
      'train-labels-idx1-ubyte': encodeIdx([12], trainLabels),
      't10k-images.idx3-ubyte': testImages,
      't10k-labels.idx1-ubyte.gz': gzipSync(encodeIdx([3], testLabels)),
    });
    const split = loadIdxDir(dir);
    expect(split.name).toBe(`idx:${dir}`);
    expect(split.train.count).toBe(12);
    expect(split.test.count).toBe(3);
    expect([split.train.rows, split.train.cols]).toEqual([4, 3]);
    expect([...split.train.labels]).toEqual([...trainLabels]);
    expect([...split.test.labels]).toEqual([...testLabels]);
    expect(split.test.images[5]).toBe(Math.fround(imageBytes(3, 4, 3)[5]! / 255));
  });

  it('fails with IdxFormatError naming the missing file', () => {
    const dir = makeDir({
      'train-images-idx3-ubyte': trainImages,
      'train-labels-idx1-ubyte': encodeIdx([12], trainLabels),
      't10k-images-idx3-ubyte': testImages,
    });
    expectIdxError(() => loadIdxDir(dir), /t10k-labels-idx1-ubyte/);
  });

  it('fails with IdxFormatError for a directory that does not exist', () => {
    expectIdxError(() => loadIdxDir(join(root, 'no-such-dir')), /train-images-idx3-ubyte/);
  });

  it('propagates a broken file in the directory', () => {
    const dir = makeDir({
      'train-images-idx3-ubyte': trainImages,
      'train-labels-idx1-ubyte': encodeIdx([11], trainLabels.subarray(0, 11)),
      't10k-images-idx3-ubyte': testImages,
      't10k-labels-idx1-ubyte': encodeIdx([3], testLabels),
    });
    expectIdxError(() => loadIdxDir(dir), /11 labels but .* holds 12 images/);
  });
});

const FASHION = '/usr/share/datasets/fashion-mnist';

describe('Fashion-MNIST from Debian dataset-fashion-mnist', () => {
  it.skipIf(!existsSync(FASHION))(
    'loads the full set: 60000/10000, 28x28, 10 balanced classes',
    () => {
      const split = loadIdxDir(FASHION);
      for (const [set, count, perClass] of [
        [split.train, 60000, 6000],
        [split.test, 10000, 1000],
      ] as const) {
        expect(set.count).toBe(count);
        expectDigitSet(set, count);
        expect(labelHistogram(set.labels, 10)).toEqual(new Array(10).fill(perClass));
        const { min, max } = pixelRange(set.images);
        expect(min).toBe(0);
        expect(max).toBe(1);
      }
    },
    30_000,
  );
});
