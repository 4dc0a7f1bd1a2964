import type { Request, Response } from 'express';
import type { WorkBudget } from './admission.js';
import { InvalidInput, TooLarge, UnsupportedMedia } from './errors.js';
import { JSON_BYTES_PER_BODY_BYTE } from './limits.js';

export interface JsonBodyLimits {
  maxBodyBytes: number;
  /** Most JSON values a body may hold (commas + 1): bounds what JSON.parse allocates. */
  maxValues: number;
}

const COMMA = 0x2c;

/**
 * Reads a JSON request body under the function's memory budget, checking sizes before
 * anything large is allocated: Content-Length against the body limit, then a reservation of
 * the memory parsing will take (refused with 429 when the function is busy), then the bytes
 * into one buffer, then a count of the values before JSON.parse builds them. The reservation
 * is given back when the response has been sent.
 */
export async function readJsonBody(req: Request, res: Response, limits: JsonBodyLimits, budget: WorkBudget): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) throw new UnsupportedMedia('unsupported_media_type', 'send the request body as application/json');
  const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding !== 'identity') throw new UnsupportedMedia('unsupported_encoding', `content-encoding ${encoding} is not accepted: a compressed body could expand past the memory limit; send it uncompressed`);
  const length = Number(req.headers['content-length']);
  const declared = req.headers['content-length'] !== undefined && Number.isSafeInteger(length) && length >= 0 ? length : undefined;
  if (declared !== undefined && declared > limits.maxBodyBytes) throw new TooLarge('body_too_large', `request body is ${declared} bytes; the limit is ${limits.maxBodyBytes}`);
  const release = budget.reserve(JSON_BYTES_PER_BODY_BYTE * (declared ?? limits.maxBodyBytes));
  res.once('close', release);
  const bytes = await receive(req, declared, limits.maxBodyBytes);
  if (bytes.length === 0) throw new InvalidInput('invalid_body', 'the request has no body: send a JSON object');
  let commas = 0;
  for (let at = bytes.indexOf(COMMA); at !== -1; at = bytes.indexOf(COMMA, at + 1)) commas++;
  if (commas + 1 > limits.maxValues) throw new TooLarge('batch_too_large', `the body holds up to ${commas + 1} values; the limit is ${limits.maxValues}`);
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new InvalidInput('invalid_json', 'request body is not valid JSON');
  }
}

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
