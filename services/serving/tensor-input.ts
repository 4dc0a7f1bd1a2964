import { REFERENCE_CNN } from '../core/model-spec.js';
import { BINARY_ELEMENT_BYTES, decodeIntensities, sliceBinaryInputs } from './binary-tensor.js';
import { DenseTensor } from './dense-json.js';
import { InvalidInput, TooLarge } from './errors.js';

/** Images as the model takes them: `count` rows of H·W·C intensities in [0,1]. */
export interface Batch {
  pixels: Float32Array;
  count: number;
}

export type InputShape = readonly [number, number, number];
const shapeText = (s: readonly number[]) => `[${s.join(',')}]`;

/** The per-image shapes a model of this input accepts: flat, HxW (single channel only) and HxWxC. */
function imageShapes([h, w, c]: InputShape) {
  const shapes: readonly (readonly number[])[] = [[h * w * c], ...(c === 1 ? [[h, w]] : []), [h, w, c]];
  return { shapes, text: shapes.map(shapeText).join(', '), pixels: h * w * c };
}

const invalid = (code: string, message: string) => new InvalidInput(code, message);
const tooMany = (n: number, max: number) => new TooLarge('batch_too_large', `${n} images in one request; the limit is ${max}`);

/** Reads one element into the model's [0,1] scale; `where` is built only when there is an error to report. */
type Element = (v: unknown, where: () => string) => number;

const intensity: Element = (v, where) => {
  if (typeof v !== 'number') throw invalid('invalid_dtype', `${where()} is ${v === null ? 'null' : typeof v}; pixels must be numbers`);
  if (!Number.isFinite(v)) throw invalid('non_finite', `${where()} is not finite`);
  if (v < 0 || v > 1) throw invalid('out_of_range', `${where()} is ${v}; pixels must be intensities in [0,1] (divide 0..255 values by 255, or send datatype UINT8)`);
  return v;
};

const uint8: Element = (v, where) => {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid('invalid_dtype', `${where()} is ${JSON.stringify(v) ?? typeof v}; UINT8 data must be integers`);
  if (v < 0 || v > 255) throw invalid('out_of_range', `${where()} is ${v}; UINT8 data must be 0..255`);
  return v / 255;
};

/**
 * TF Serving `instances` / `inputs`: a list of images, each flat, HxW or HxWxC (from the
 * model spec). Values must be intensities in [0,1]; 0..255 input is refused rather than
 * silently misread. The count is checked before the tensor is allocated.
 */
export function imagesFromNested(value: unknown, field: string, maxBatch: number, inputShape: InputShape = REFERENCE_CNN.inputShape): Batch {
  const { shapes: IMAGE_SHAPES, text: IMAGE_SHAPES_TEXT, pixels: PIXELS } = imageShapes(inputShape);
  if (value instanceof DenseTensor) {
    const [count = 0, ...image] = value.dims;
    if (value.unitRange && count <= maxBatch && sameShape(image, nestedImageShape(image[0], image.length >= 3, IMAGE_SHAPES, inputShape))) return { pixels: value.values, count };
    value = value.nested(); // refused below, with the message the nested arrays get
  }
  if (!Array.isArray(value)) throw invalid('invalid_shape', `'${field}' must be an array of images`);
  if (value.length === 0) throw invalid('invalid_shape', `'${field}' is empty`);
  if (value.length > maxBatch) throw tooMany(value.length, maxBatch);
  const pixels = new Float32Array(value.length * PIXELS);
  for (let i = 0; i < value.length; i++) {
    const image = value[i] as unknown;
    const where = () => `${field}[${i}]`;
    if (!Array.isArray(image)) throw invalid('invalid_shape', `${where()} must be an array (one image: ${IMAGE_SHAPES_TEXT})`);
    const exact = nestedImageShape(image.length, Array.isArray((image[0] as unknown[] | undefined)?.[0]), IMAGE_SHAPES, inputShape);
    if (!exact) throw invalid('invalid_shape', `${where()} has length ${image.length}; each image needs ${PIXELS} values (${IMAGE_SHAPES_TEXT})`);
    writeNested(image, exact, 0, pixels, { at: i * PIXELS }, intensity, where);
  }
  return { pixels, count: value.length };
}

/**
 * The shape an image must have in full, from how it begins: its length picks one of the model's
 * shapes, and an HxWxC image may leave out its single channel (HxW) — both nest the same way to
 * that depth, so whether it nests three deep says if the channel is there.
 */
function nestedImageShape(length: number | undefined, threeDeep: boolean, shapes: readonly (readonly number[])[], inputShape: InputShape): readonly number[] | undefined {
  const shape = shapes.find((s) => s[0] === length);
  if (!shape) return undefined;
  const channelsGiven = shape.length === 3 || (shape.length === 2 && threeDeep);
  return channelsGiven && shape.length === 2 ? inputShape : shape;
}

const sameShape = (a: readonly number[], b: readonly number[] | undefined) => b !== undefined && a.length === b.length && a.every((d, i) => d === b[i]);

/** Writes `data`, nested exactly as `shape` says, into `out` in row-major order. */
function writeNested(data: unknown, shape: readonly number[], dim: number, out: Float32Array, pos: { at: number }, element: Element, where: () => string): void {
  if (!Array.isArray(data) || data.length !== shape[dim]) {
    const got = Array.isArray(data) ? `length ${data.length}` : data === null ? 'null' : typeof data;
    throw invalid('invalid_shape', `${where()} has ${got}; expected ${shape[dim]} ${dim === shape.length - 1 ? 'values' : 'rows'} (shape ${shapeText(shape.slice(dim))})`);
  }
  if (dim === shape.length - 1) {
    // Intensities in range are stored as they are; anything else goes through `element`, which converts or refuses it.
    // No closure in this loop: one that captured `i` would cost a context per value (100 digits: 0.34 ms, against 0.1 without).
    let at = pos.at;
    for (let i = 0; i < data.length; i++) {
      const v: unknown = data[i];
      out[at++] = element === intensity && typeof v === 'number' && v >= 0 && v <= 1 ? v : readElement(element, v, where, i);
    }
    pos.at = at;
    return;
  }
  for (let i = 0; i < data.length; i++) writeNested(data[i], shape, dim + 1, out, pos, element, () => `${where()}[${i}]`);
}

/** `element` of data[i], its position named only if it is refused. */
function readElement(element: Element, v: unknown, where: () => string, i: number): number {
  return element(v, () => `${where()}[${i}]`);
}

/** Every datatype the Open Inference Protocol lists, and how this model reads it (undefined: refused). */
export const V2_DATATYPES: Record<string, Element | undefined> = {
  FP32: intensity,
  FP64: intensity,
  FP16: intensity,
  UINT8: uint8,
  BOOL: undefined,
  UINT16: undefined,
  UINT32: undefined,
  UINT64: undefined,
  INT8: undefined,
  INT16: undefined,
  INT32: undefined,
  INT64: undefined,
  BYTES: undefined,
};
export const V2_SUPPORTED = Object.keys(V2_DATATYPES).filter((k) => V2_DATATYPES[k]);

export interface V2Input {
  name?: unknown;
  shape?: unknown;
  datatype?: unknown;
  parameters?: unknown;
  data?: unknown;
}

/** An Open Inference Protocol input's shape and datatype, checked against the model and the batch limit. */
interface V2Header {
  count: number;
  datatype: string;
  element: Element;
  shape: number[];
  pixels: number;
}

function checkV2Header(input: V2Input, maxBatch: number, inputShape: InputShape): V2Header {
  const { shapes: IMAGE_SHAPES, text: IMAGE_SHAPES_TEXT, pixels } = imageShapes(inputShape);
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw invalid('invalid_input', 'each input must be an object with name, shape, datatype and data');
  const datatype = input.datatype;
  if (typeof datatype !== 'string' || !(datatype in V2_DATATYPES)) {
    throw invalid('invalid_datatype', `datatype ${JSON.stringify(datatype) ?? 'is missing'}${typeof datatype === 'string' ? ' is not an Open Inference Protocol datatype' : ''}; send one of ${V2_SUPPORTED.join(', ')}`);
  }
  const element = V2_DATATYPES[datatype];
  if (!element) throw invalid('unsupported_datatype', `datatype ${datatype} is not supported by this model; send one of ${V2_SUPPORTED.join(', ')}`);
  const shape = input.shape;
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) throw invalid('invalid_shape', 'shape must be a non-empty array of positive integers');
  const imageShape = shape.slice(1) as number[];
  if (!IMAGE_SHAPES.some((s) => shapeText(s) === shapeText(imageShape))) {
    throw invalid('invalid_shape', `shape ${shapeText(shape)} is not [N,...] with an image of ${IMAGE_SHAPES_TEXT}`);
  }
  const count = shape[0] as number;
  if (count > maxBatch) throw tooMany(count, maxBatch);
  return { count, datatype, element, shape: shape as number[], pixels };
}

/**
 * Open Inference Protocol tensor: FP32/FP64/FP16 intensities in [0,1] or UINT8 0..255, of
 * shape [N,PIXELS], [N,H,W] or [N,H,W,C], data flat or nested in row-major order. The shape
 * is checked against the batch limit before anything is allocated, and the data is walked
 * in place, never flattened into a copy.
 */
export function imagesFromV2(input: V2Input, maxBatch: number, inputShape: InputShape = REFERENCE_CNN.inputShape): Batch {
  const { count: n, element, shape, pixels: PIXELS } = checkV2Header(input, maxBatch, inputShape);
  let data = input.data;
  if (data instanceof DenseTensor) {
    if (element === intensity && data.unitRange && (sameShape(data.dims, [n * PIXELS]) || sameShape(data.dims, shape))) return { pixels: data.values, count: n };
    data = data.nested(); // converted or refused below, as nested arrays are
  }
  if (!Array.isArray(data)) throw invalid('invalid_input', 'data must be an array (flat, or nested as the shape says)');
  const pixels = new Float32Array(n * PIXELS);
  const flat = data.length === n * PIXELS && !(n === 1 && shape.length === 2 && Array.isArray(data[0]));
  if (!flat && data.length !== n) throw invalid('invalid_shape', `shape ${shapeText(shape)} needs ${n * PIXELS} values flat or ${n} nested rows; data has ${data.length}`);
  writeNested(data, flat ? [n * PIXELS] : shape, 0, pixels, { at: 0 }, element, () => 'data');
  return { pixels, count: n };
}

/**
 * The same input sent with the binary tensor data extension: its shape and datatype from the
 * JSON header, its elements from the bytes after it (`data`: every one of them, as this model
 * has one input; exactly `declaredSize` = shape × element size, little-endian). The shape and
 * the batch limit are checked first: a huge declared batch is a 413 whatever bytes came with it.
 */
export function imagesFromV2Binary(input: V2Input, declaredSize: number | undefined, data: Uint8Array, maxBatch: number, inputShape: InputShape = REFERENCE_CNN.inputShape): Batch {
  const { count, datatype, pixels: PIXELS } = checkV2Header(input, maxBatch, inputShape);
  const [bytes = new Uint8Array(0)] = sliceBinaryInputs(data, [declaredSize]);
  if (input.data !== undefined) throw invalid('invalid_input', 'an input sent as binary data (binary_data_size) must not also carry JSON data');
  const elementBytes = BINARY_ELEMENT_BYTES[datatype]!;
  const expected = count * PIXELS * elementBytes;
  if (bytes.length !== expected) throw invalid('binary_size_mismatch', `binary_data_size is ${bytes.length} bytes; shape [${input.shape as number[]}] of ${datatype} needs ${expected}`);
  const pixels = new Float32Array(count * PIXELS);
  decodeIntensities(bytes, datatype, pixels, 'binary data');
  return { pixels, count };
}
