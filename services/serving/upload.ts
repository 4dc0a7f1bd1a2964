import { readCappedBody } from '../http/capped-body.js';
import type busboy from 'busboy';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Request, Response, Router } from 'express';
import { inputSize } from '../core/model-spec.js';
import type { WorkBudget } from './admission.js';
import { requireKey } from './edge.js';
import { InvalidInput, ServingError, TooLarge, UnsupportedMedia } from './errors.js';
import { IMAGE_BYTES_PER_PIXEL } from './limits.js';
import type { InvertMode, Preprocess } from './images.js';
import type { ModelRef, Predictor } from './predictor.js';
import { rows } from './tfserving.js';

export interface UploadDeps {
  predictor: Predictor;
  maxBatch: number;
  maxBodyBytes: number;
  /** Pixels one request may decode, all its images together (checked from their headers first). */
  imagePixelBudget: number;
  budget: WorkBudget;
  apiKeys?: string[];
}

interface UploadedImage {
  name: string;
  bytes: Buffer;
}

/**
 * Image upload: `POST /v1/models/{m}[/versions/{v}]:classify` with multipart/form-data
 * (any number of image files) or a raw image/png, image/jpeg or octet-stream body. Every
 * image's size is read from its header and checked against the request's pixel budget
 * before any is decoded; decoding holds a reservation of the memory it takes.
 */
export function mountUpload(deps: UploadDeps) {
  return (v1: Router) => {
    const classify = async (req: Request, res: Response) => {
      const p = req.params as Record<string, string>;
      const ref: ModelRef = { name: p[0]!, version: p[1] };
      deps.predictor.resolve(ref);
      // The run's image rules are the defaults (model-spec.ts); the query overrides them.
      const colour = deps.predictor.spec.inputShape[2] === 3;
      const rules = deps.predictor.spec.image ?? {};
      const invert = parseInvert(req.query.invert ?? rules.invert ?? (colour ? 'false' : 'auto'));
      const asked = req.query.preprocess ?? rules.preprocess ?? (colour ? 'resize' : 'mnist');
      const preprocess: Preprocess = asked === 'resize' ? 'resize' : 'mnist';
      const declared = Number(req.headers['content-length']);
      res.once('close', deps.budget.reserve(Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, deps.maxBodyBytes) : deps.maxBodyBytes));
      const files = await readImages(req, deps.maxBodyBytes, deps.maxBatch);
      // Image codecs load on first use: most traffic is tensors, and cold starts should not pay for them.
      const { checkPixels, decodeImage, readImageHeader, toModelInput } = await import('./images.js');
      const named = <T>(f: UploadedImage, fn: () => T): T => {
        try {
          return fn();
        } catch (e) {
          if (e instanceof ServingError) e.message = `${f.name}: ${e.message}`;
          throw e;
        }
      };
      let allowed = deps.imagePixelBudget;
      const headers = files.map((f) => named(f, () => {
        const header = readImageHeader(f.bytes);
        allowed -= checkPixels(header, allowed);
        return header;
      }));
      const spec = deps.predictor.spec;
      const PIXELS = inputSize(spec);
      const pixels = new Float32Array(files.length * PIXELS);
      for (let i = 0; i < files.length; i++) {
        const f = files[i]!;
        const release = deps.budget.reserve(IMAGE_BYTES_PER_PIXEL * headers[i]!.width * headers[i]!.height);
        try {
          const raw = await decodeImage(f.bytes, headers[i]!).catch((e: unknown) => named(f, () => { throw e; }));
          await nextTurn(); // decoding and centring each hold the event loop: probes get a turn between them
          pixels.set(toModelInput(raw, invert, preprocess, { consume: true, shape: spec.inputShape }), i * PIXELS);
        } finally {
          release();
        }
      }
      const { probs, classes, model } = await deps.predictor.predict({ pixels, count: files.length }, ref);
      const probRows = rows(probs, files.length, spec.classes);
      res.setHeader('X-Model-Version', String(model.version));
      res.json({
        model_name: deps.predictor.name,
        model_version: String(model.version),
        results: files.map((f, i) => ({ file: f.name, class: classes[i], probabilities: probRows[i], top3: top3(probs, i, spec.classes) })),
      });
    };
    v1.post(/^\/models\/([^/:]+):classify$/, requireKey(deps.apiKeys), classify);
    v1.post(/^\/models\/([^/:]+)\/versions\/([^/:]+):classify$/, requireKey(deps.apiKeys), classify);
  };
}

function top3(probs: Float32Array, row: number, classes: number): { class: number; probability: number }[] {
  return Array.from(probs.subarray(row * classes, (row + 1) * classes), (p, c) => ({ class: c, probability: Math.round(p * 1e4) / 1e4 }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, 3);
}

function parseInvert(q: unknown): InvertMode {
  if (q === undefined) return 'auto';
  if (q === 'auto' || q === 'true' || q === 'false') return q;
  throw new InvalidInput('invalid_query', 'invert must be auto, true or false');
}

/** Images from multipart/form-data (any number of file fields) or a raw image/* body. */
function readImages(req: Request, maxBytes: number, maxFiles: number): Promise<UploadedImage[]> {
  const type = String(req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('multipart/form-data')) return readMultipart(req, maxBytes, maxFiles);
  if (type.startsWith('image/') || type === 'application/octet-stream') {
    return readBody(req, maxBytes).then((bytes) => {
      if (bytes.length === 0) throw new InvalidInput('empty_body', 'the image body is empty');
      return [{ name: 'body', bytes }];
    });
  }
  const tfClassify = /json/.test(type) ? " TF Serving's Classify API (JSON examples) is not supported: send image tensors to :predict," : '';
  return Promise.reject(new UnsupportedMedia('unsupported_media_type', `this route classifies image files:${tfClassify} send multipart/form-data with image files, or a raw image/png or image/jpeg body`));
}

function readBody(req: Request, maxBytes: number): Promise<Buffer> {
  return readCappedBody(
    req,
    maxBytes,
    () => new TooLarge('body_too_large', `image body exceeds ${maxBytes} bytes`),
    () => new InvalidInput('request_aborted', 'the request body was not received completely'),
  );
}

async function readMultipart(req: Request, maxBytes: number, maxFiles: number): Promise<UploadedImage[]> {
  const { default: createBusboy } = await import('busboy');
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = createBusboy({ headers: req.headers, limits: { fileSize: maxBytes, files: maxFiles, fields: 20, parts: maxFiles + 20 } });
    } catch (e) {
      return reject(new InvalidInput('invalid_multipart', `multipart request is malformed: ${(e as Error).message}`));
    }
    const files: UploadedImage[] = [];
    let failed: ServingError | undefined;
    const fail = (e: ServingError) => {
      failed ??= e;
    };
    bb.on('file', (_field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => fail(new TooLarge('file_too_large', `${info.filename ?? 'file'} exceeds ${maxBytes} bytes`)));
      // A body that ends before its closing boundary errors the file stream too; unhandled, that would crash the process.
      stream.on('error', (e: Error) => fail(new InvalidInput('invalid_multipart', `multipart body is malformed: ${e.message}`)));
      stream.on('end', () => files.push({ name: info.filename || `file${files.length}`, bytes: Buffer.concat(chunks) }));
    });
    bb.on('filesLimit', () => fail(new TooLarge('too_many_files', `more than ${maxFiles} files in one request`)));
    bb.on('partsLimit', () => fail(new TooLarge('too_many_parts', 'too many parts in the multipart body')));
    bb.on('error', (e) => {
      req.unpipe(bb);
      req.resume();
      reject(failed ?? new InvalidInput('invalid_multipart', `multipart body is malformed: ${(e as Error).message}`));
    });
    bb.on('close', () => {
      if (failed) return reject(failed);
      if (files.length === 0) return reject(new InvalidInput('no_files', 'the multipart body holds no image files'));
      resolve(files);
    });
    req.on('aborted', () => reject(new InvalidInput('request_aborted', 'the request body was not received completely')));
    // busboy limits each file; the body as a whole must stay under maxBytes too.
    let total = 0;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > maxBytes && !failed) {
        fail(new TooLarge('body_too_large', `multipart body exceeds ${maxBytes} bytes`));
        req.unpipe(bb);
        req.resume();
        reject(failed);
      }
    });
    req.pipe(bb);
  });
}
