import { createHash, randomUUID } from 'node:crypto';
import { realpath, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { InvalidInput, TooLarge } from './errors.js';
import type { InvertMode } from './images.js';

/** CloudEvent types of event-driven inference. */
export const INFERENCE_EVENTS = {
  requested: 'dev.edgefl.inference.requested',
  completed: 'dev.edgefl.inference.completed',
} as const;

const requestId = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'request_id: 1-128 characters of A-Z a-z 0-9 . _ : -');
const name = z.string().min(1).max(512);
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64 data expected');

/** S3 bucket notification records (MinIO's webhook target, AWS S3 events): the created objects, as references. */
const s3Records = z.looseObject({
  Records: z.array(z.looseObject({ s3: z.looseObject({ bucket: z.looseObject({ name }), object: z.looseObject({ key: name, eTag: z.string().optional(), sequencer: z.string().optional() }) }) })).min(1),
});

/**
 * The data of a `dev.edgefl.inference.requested` event: exactly one of inline images (PNG or
 * JPEG, base64), a UINT8 tensor of raw 28x28 rows (a chunk of a batch file), or references to
 * stored objects. `request_id` makes redelivery idempotent; `offset` numbers the items of one
 * request sent in several chunks.
 */
export const InferenceRequestSchema = z
  .strictObject({
    request_id: requestId.optional(),
    source: name.optional(),
    offset: z.number().int().min(0).max(2 ** 30).default(0),
    invert: z.enum(['auto', 'true', 'false']).default('auto'),
    images: z.array(z.strictObject({ name: name.optional(), data: base64 })).min(1).optional(),
    tensor: z.strictObject({ datatype: z.literal('UINT8'), count: z.number().int().min(1), data: base64 }).optional(),
    objects: z.array(z.strictObject({ key: name })).min(1).optional(),
  })
  .refine((r) => [r.images, r.tensor, r.objects].filter(Boolean).length === 1, 'send exactly one of images, tensor or objects');

export type InferenceRequest = z.output<typeof InferenceRequestSchema>;

/** One image of a request: its bytes, or the error that already decided its record. */
export type InputItem = { source: string | null } & ({ bytes: Buffer } | { pixels: Float32Array } | { error: { code: string; message: string } });

export interface ParsedRequest {
  requestId: string;
  offset: number;
  count: number;
  invert: InvertMode;
  /** Reads the items; object references are read only now, after the replay check. */
  items(): Promise<InputItem[]>;
}

/**
 * The request an event's data asks for. Without a request_id, the CloudEvent's (source, id)
 * (unique per event, and kept by every redelivery) names it; a plain JSON body without one
 * gets a fresh id, so only callers that name their requests get deduplication.
 */
export function parseInferenceRequest(data: unknown, event: { id?: string; source?: string }, opts: { maxItems: number; objectRoot?: string; pixelsPerImage: number }): ParsedRequest {
  const s3 = s3Records.safeParse(data);
  if (s3.success) {
    const objects = s3.data.Records.map((r) => ({ key: `${r.s3.bucket.name}/${decodeS3Key(r.s3.object.key)}` }));
    // A re-sent notification of the same object version is the same request.
    const versions = s3.data.Records.map((r, i) => `${objects[i]!.key}@${r.s3.object.eTag ?? r.s3.object.sequencer ?? ''}`).join('\n');
    return parseInferenceRequest({ request_id: `s3-${sha256(versions).slice(0, 32)}`, objects }, event, opts);
  }
  const parsed = InferenceRequestSchema.safeParse(data);
  if (!parsed.success) throw new InvalidInput('invalid_request', issuesText(parsed.error, 'data'));
  const r = parsed.data;
  const count = r.images?.length ?? r.objects?.length ?? r.tensor!.count;
  if (count > opts.maxItems) throw new TooLarge('batch_too_large', `${count} images in one event; the limit is ${opts.maxItems}: send the batch in chunks (offset)`);
  const id = r.request_id ?? (event.id ? `ce-${sha256(`${event.source ?? ''}\0${event.id}`).slice(0, 32)}` : `req-${randomUUID()}`);
  return { requestId: id, offset: r.offset, count, invert: r.invert, items: () => readItems(r, count, opts.objectRoot, opts.pixelsPerImage) };
}

async function readItems(r: InferenceRequest, count: number, objectRoot: string | undefined, PIXELS: number): Promise<InputItem[]> {
  if (r.images) return r.images.map((img, i) => ({ source: img.name ?? (count === 1 ? (r.source ?? null) : null) ?? `image-${r.offset + i}`, bytes: Buffer.from(img.data, 'base64') }));
  if (r.tensor) {
    const bytes = Buffer.from(r.tensor.data, 'base64');
    if (bytes.length !== count * PIXELS) throw new InvalidInput('invalid_tensor', `tensor data holds ${bytes.length} bytes; ${count} images of ${PIXELS} UINT8 pixels need ${count * PIXELS}`);
    const source = r.source ?? 'tensor';
    return Array.from({ length: count }, (_, i) => ({ source: `${source}[${r.offset + i}]`, pixels: Float32Array.from(bytes.subarray(i * PIXELS, (i + 1) * PIXELS), (v) => v / 255) }));
  }
  if (!objectRoot) throw new InvalidInput('objects_unavailable', 'this serving function reads no stored objects (EDGEFL_OBJECT_ROOT is not set): send the images inline');
  const items: InputItem[] = [];
  for (const o of r.objects!) items.push(await readObject(objectRoot, o.key));
  return items;
}

/** Object-level failures become that image's error record; only the request as a whole is refused with a status. */
async function readObject(root: string, key: string): Promise<InputItem> {
  const error = (code: string, message: string): InputItem => ({ source: key, error: { code, message: `${key}: ${message}` } });
  const rootReal = await realpath(root);
  const file = path.resolve(rootReal, key);
  if (!file.startsWith(rootReal + path.sep)) return error('invalid_object_key', 'the key leaves the object store');
  try {
    // A symlink inside the store must not lead out of it either.
    const real = await realpath(file);
    if (!real.startsWith(rootReal + path.sep)) return error('invalid_object_key', 'the key leaves the object store');
    const info = await stat(real);
    if (!info.isFile()) return error('object_not_found', 'not an object');
    if (info.size > MAX_OBJECT_BYTES) return error('image_too_large', `object is ${info.size} bytes; images up to ${MAX_OBJECT_BYTES} are read`);
    return { source: key, bytes: await readFile(real) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return error('object_not_found', 'no such object');
    throw e;
  }
}

/** An image object larger than this is not a digit photo; refused before it is read. */
export const MAX_OBJECT_BYTES = 16 * 2 ** 20;

/** S3 notifications URL-encode keys (spaces as '+'). */
function decodeS3Key(key: string): string {
  try {
    return decodeURIComponent(key.replaceAll('+', ' '));
  } catch {
    return key;
  }
}

/** A zod failure as one line: each issue with the field it is about. */
export function issuesText(error: z.ZodError, whole: string): string {
  return error.issues.slice(0, 3).map((i) => `${i.path.length ? i.path.join('.') : whole}: ${i.message}`).join('; ');
}

export const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
