import type { IncomingMessage as Request, ServerResponse as Response } from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { WorkBudget } from './admission.js';
import { InvalidInput, TooLarge, UnsupportedMedia } from './errors.js';
import { BINARY_HEADER, parseHeaderLength } from './binary-tensor.js';
import { parseJsonInTurns, parseTensorJson, type TensorSites } from './json-turns.js';
import { jsonParseCost } from './limits.js';
import type { ModelRef, Predictor } from './predictor.js';
import { parseBody } from './schema.js';
import type { z } from 'zod';

export interface JsonBodyLimits {
  maxBodyBytes: number;
  /** Most JSON values a body may hold (commas + 1): bounds what JSON.parse allocates. */
  maxValues: number;
  /** Most arrays and objects: bounds how long JSON.parse holds the event loop. */
  maxContainers: number;
}

const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;

/**
 * How many values and containers JSON.parse would build from `bytes` (an upper bound: commas
 * inside strings count too). Every JSON body is counted before it is parsed, so this reads four
 * bytes at a time: a 230 KB batch of 100 digits took 0.29 ms a byte at a time, 0.095 ms so.
 */
export function countJsonValues(bytes: Uint8Array): { values: number; containers: number } {
  const n = bytes.length;
  // Bytes before the first 4-byte boundary, then whole words, then the bytes after the last.
  const lead = Math.min(n, (4 - (bytes.byteOffset & 3)) & 3);
  const words = (n - lead) >>> 2;
  const head = countBytes(bytes, 0, lead);
  const tail = countBytes(bytes, lead + words * 4, n);
  let commas = head.commas + tail.commas;
  let containers = head.containers + tail.containers;
  if (words > 0) {
    const w32 = new Uint32Array(bytes.buffer, bytes.byteOffset + lead, words);
    for (let k = 0; k < words; k++) {
      const w = w32[k]!;
      commas += zeroBytes(w ^ 0x2c2c2c2c);
      // '[' (0x5b) and '{' (0x7b) differ only in bit 0x20: with it set, both are 0x7b and no other byte is.
      containers += zeroBytes((w | 0x20202020) ^ 0x7b7b7b7b);
    }
  }
  return { values: commas + 1, containers };
}

/** How many of the four bytes of `x` are zero. */
function zeroBytes(x: number): number {
  // Per byte: the high bit of (low 7 bits + 0x7f) | byte is set exactly when the byte is not zero.
  const zeroHighBits = ~(((x & 0x7f7f7f7f) + 0x7f7f7f7f) | x) & 0x80808080;
  // Moved to bit 0 of each byte and summed into the top byte.
  return Math.imul(zeroHighBits >>> 7, 0x01010101) >>> 24;
}

function countBytes(bytes: Uint8Array, from: number, to: number): { commas: number; containers: number } {
  let commas = 0;
  let containers = 0;
  for (let i = from; i < to; i++) {
    const b = bytes[i];
    if (b === COMMA) commas++;
    else if (b === OPEN_ARRAY || b === OPEN_OBJECT) containers++;
  }
  return { commas, containers };
}

/**
 * Reads a JSON request body under the function's memory budget, checking sizes before
 * anything large is allocated: Content-Length against the body limit; a reservation for the
 * bytes (refused with 429 when the function is busy); the bytes into one buffer; then a count
 * of the values and containers in them, and a reservation for what JSON.parse will build from
 * them, before it builds anything. The reservations are given back when the response has
 * been sent.
 */
export async function readJsonBody(req: Request, res: Response, limits: JsonBodyLimits, budget: WorkBudget, tensorAt?: TensorSites): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) throw new UnsupportedMedia('unsupported_media_type', 'send the request body as application/json');
  const bytes = await receiveUnderBudget(req, res, limits, budget);
  if (bytes.length === 0) throw new InvalidInput('invalid_body', 'the request has no body: send a JSON object');
  return parseJsonUnderBudget(bytes, res, limits, budget, tensorAt);
}

/** The body's bytes, refused before they arrive when Content-Length is over the limit or the body is compressed, and reserved from the budget. */
async function receiveUnderBudget(req: Request, res: Response, limits: JsonBodyLimits, budget: WorkBudget): Promise<Buffer> {
  const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding !== 'identity') throw new UnsupportedMedia('unsupported_encoding', `content-encoding ${encoding} is not accepted: a compressed body could expand past the memory limit; send it uncompressed`);
  const length = Number(req.headers['content-length']);
  const declared = req.headers['content-length'] !== undefined && Number.isSafeInteger(length) && length >= 0 ? length : undefined;
  if (declared !== undefined && declared > limits.maxBodyBytes) throw new TooLarge('body_too_large', `request body is ${declared} bytes; the limit is ${limits.maxBodyBytes}`);
  res.once('close', budget.reserve(declared ?? limits.maxBodyBytes));
  return receive(req, declared, limits.maxBodyBytes);
}

/** JSON.parse of `bytes` once their values and containers are counted, within the limits, and what parsing builds is reserved. */
async function parseJsonUnderBudget(bytes: Buffer, res: Response, limits: JsonBodyLimits, budget: WorkBudget, tensorAt?: TensorSites): Promise<unknown> {
  const { values, containers } = countJsonValues(bytes);
  if (values > limits.maxValues) throw new TooLarge('batch_too_large', `the body holds up to ${values} values; the limit is ${limits.maxValues}`);
  if (containers > limits.maxContainers) {
    throw new TooLarge('too_many_arrays', `the body holds ${containers} arrays or objects; the limit is ${limits.maxContainers}: send each image flat, or without its channel dimension, rather than one array per pixel`);
  }
  res.once('close', budget.reserve(jsonParseCost(bytes.length, values, containers) - bytes.length));
  // Counting, parsing (in groups of elements) and walking a large body each hold the event loop; between them, readiness probes and small requests get their turn.
  await nextTurn();
  let parsed: unknown;
  try {
    parsed = tensorAt ? await parseTensorJson(bytes, tensorAt, values) : await parseJsonInTurns(bytes);
  } catch (e) {
    if (e instanceof InvalidInput) throw e;
    throw new InvalidInput('invalid_json', 'request body is not valid JSON');
  }
  if (bytes.length > YIELD_AFTER_BYTES) await nextTurn();
  return parsed;
}

/**
 * A request in the binary tensor data extension's form (binary-tensor.ts): the JSON header,
 * parsed under the same limits as a JSON body, and the bytes after it. What decoding the
 * bytes builds (at most 4 bytes of Float32 per byte received) is reserved before the caller decodes.
 */
export async function readBinaryBody(req: Request, res: Response, limits: JsonBodyLimits, budget: WorkBudget): Promise<{ header: unknown; data: Buffer }> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/(octet-stream|([\w.+-]+\+)?json)\s*(;|$)/i.test(type)) throw new UnsupportedMedia('unsupported_media_type', 'send a binary tensor request as application/octet-stream');
  const bytes = await receiveUnderBudget(req, res, limits, budget);
  const headerLength = parseHeaderLength(req.headers[BINARY_HEADER], bytes.length);
  let header: unknown;
  try {
    header = await parseJsonUnderBudget(bytes.subarray(0, headerLength), res, limits, budget);
  } catch (e) {
    if (e instanceof InvalidInput && e.code === 'invalid_json') throw new InvalidInput('invalid_json', `the first ${headerLength} bytes (Inference-Header-Content-Length) are not a valid JSON inference request`);
    throw e;
  }
  const data = bytes.subarray(headerLength);
  res.once('close', budget.reserve(4 * data.length));
  return { header, data };
}

const YIELD_AFTER_BYTES = 64 * 1024;

/** The body's bytes: into one buffer of the declared size, or chunks (chunked encoding), never past `max`. */
function receive(req: Request, declared: number | undefined, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const fixed = declared !== undefined ? Buffer.allocUnsafe(declared) : undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (e: Error) => {
      req.removeListener('data', onData);
      req.resume();
      reject(e);
    };
    const onData = (c: Buffer) => {
      if (size + c.length > (declared ?? max)) {
        return fail(declared !== undefined ? new InvalidInput('body_size_mismatch', 'request body is longer than its Content-Length') : new TooLarge('body_too_large', `request body exceeds ${max} bytes`));
      }
      if (fixed) c.copy(fixed, size);
      else chunks.push(c);
      size += c.length;
    };
    req.on('data', onData);
    req.once('end', () => {
      if (fixed && size !== declared) return reject(new InvalidInput('body_size_mismatch', 'request body is shorter than its Content-Length'));
      resolve(fixed ?? Buffer.concat(chunks, size));
    });
    req.once('aborted', () => reject(new InvalidInput('request_aborted', 'the client closed the request before the body arrived')));
    req.once('error', () => reject(new InvalidInput('request_aborted', 'the request body was not received completely')));
  });
}

/**
 * A protocol's JSON request to a model: the model and version are checked first (an unknown
 * model or a version not loaded is answered before the body is read), then the body is read
 * under the budget and its envelope checked against `schema`. The tensor, where `tensorAt`
 * allows it, may arrive as a DenseTensor.
 */
export async function readModelRequest<S extends z.ZodType>(
  req: Request,
  res: Response,
  ctx: { predictor: Predictor; body: JsonBodyLimits; budget: WorkBudget },
  ref: ModelRef,
  schema: S,
  what: string,
  tensorAt?: TensorSites,
): Promise<z.infer<S>> {
  ctx.predictor.resolve(ref);
  return parseBody(schema, await readJsonBody(req, res, ctx.body, ctx.budget, tensorAt), what);
}
