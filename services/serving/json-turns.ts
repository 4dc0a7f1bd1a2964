import { randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DenseArrayReader, DenseTensor } from './dense-json.js';
import { InvalidInput } from './errors.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * JSON.parse of a whole tensor body holds the event loop for tens of milliseconds (the
 * longest step of a large request). This parses the body's largest array — the tensor — a
 * group of elements at a time, each group on its own turn of the event loop, and the small
 * envelope around it on its own: the same value JSON.parse would give, in short steps.
 */
export async function parseJsonInTurns(bytes: Buffer, turnBytes = 256 * 1024): Promise<unknown> {
  const span = bytes.length > turnBytes ? largestArray(bytes) : undefined;
  if (!span || span.end - span.start < bytes.length / 2) return JSON.parse(bytes.toString('utf8'));
  // The tensor is replaced by a string no request can contain, found again in the parsed envelope.
  const marker = `\u0000tensor:${randomUUID()}`;
  const envelope = envelopeAround(bytes, span, marker);
  const elements: unknown[] = [];
  for (const [from, to] of elementGroups(bytes, span.start + 1, span.end, turnBytes)) {
    await nextTurn();
    const group = JSON.parse(`[${bytes.toString('utf8', from, to)}]`) as unknown[];
    for (const e of group) elements.push(e);
  }
  return replaceMarker(envelope, marker, elements, 0);
}

/** A path into a parsed body: object keys and array indices. */
export type BodyPath = readonly (string | number)[];

/** Where a protocol's body may carry its tensor; there it is read as a DenseTensor (dense-json.ts). */
export type TensorSites = (path: BodyPath) => boolean;

/**
 * A request body whose tensor — a regularly nested array of numbers filling most of it — is
 * read straight into a DenseTensor (dense-json.ts) rather than built as JS arrays, when it
 * stands where `tensorAt` says a tensor may. The rest of the body is parsed by JSON.parse
 * around it. Any body this does not fit (the tensor elsewhere, strings or objects inside it,
 * a body that is not JSON) is parsed as parseJsonInTurns parses it. `capacity`: the values
 * counted in the body, which bounds the tensor's.
 */
export async function parseTensorJson(bytes: Buffer, tensorAt: TensorSites, capacity: number, turnBytes = 256 * 1024): Promise<unknown> {
  const tensor = await findDenseTensor(bytes, capacity, turnBytes);
  if (tensor) {
    const marker = `\u0000tensor:${randomUUID()}`;
    let envelope: unknown;
    try {
      envelope = envelopeAround(bytes, tensor, marker);
    } catch {
      envelope = undefined; // not JSON around the array: JSON.parse of the whole body says why
    }
    const paths: BodyPath[] = [];
    if (envelope !== undefined) findMarker(envelope, marker, [], paths);
    if (paths.length === 1) {
      const path = paths[0]!;
      const value = tensorAt(path) ? tensor.value : tensor.value.nested();
      return path.length === 0 ? value : (setAt(envelope as Record<string, unknown>, path, value), envelope);
    }
  }
  return parseJsonInTurns(bytes, turnBytes);
}

/** The first array of the body that DenseArrayReader reads whole and that fills over half the body, read in turns of `turnBytes`. */
async function findDenseTensor(bytes: Buffer, capacity: number, turnBytes: number): Promise<{ start: number; end: number; value: DenseTensor } | undefined> {
  const out = new Float32Array(capacity);
  for (let from = 0; ; ) {
    const start = bytes.indexOf(OPEN_ARRAY, from);
    if (start < 0) return undefined;
    const reader = new DenseArrayReader(bytes, start, out);
    let read = reader.read(turnBytes);
    while (read === 'paused') {
      await nextTurn();
      read = reader.read(turnBytes);
    }
    if (read && 2 * (read.end + 1 - start) > bytes.length) {
      const text = () => bytes.toString('utf8', start, read.end + 1);
      return { start, end: read.end, value: new DenseTensor(read.dims, read.values, read.unitRange, text) };
    }
    // Arrays inside the one just read (or given up on) are no larger than it: go on after it.
    from = Math.max(start + 1, reader.position);
  }
}

/** Every path at which `value` holds the marker string. */
function findMarker(value: unknown, marker: string, path: (string | number)[], found: BodyPath[]): void {
  if (value === marker) found.push(path.slice());
  if (value === null || typeof value !== 'object' || path.length > MAX_ENVELOPE_DEPTH) return;
  const container = value as Record<string, unknown>;
  for (const key of Object.keys(container)) {
    path.push(Array.isArray(container) ? Number(key) : key);
    findMarker(container[key], marker, path, found);
    path.pop();
  }
}

function setAt(root: Record<string, unknown>, path: BodyPath, value: unknown): void {
  let container = root;
  for (const key of path.slice(0, -1)) container = container[key] as Record<string, unknown>;
  container[path[path.length - 1]!] = value;
}

/** JSON.parse of the body with the array at [start, end] replaced by the string `marker`. */
function envelopeAround(bytes: Buffer, { start, end }: { start: number; end: number }, marker: string): unknown {
  return JSON.parse(bytes.toString('utf8', 0, start) + JSON.stringify(marker) + bytes.toString('utf8', end + 1));
}

/** The widest array of the document: [start, end] of its brackets (strings and escapes skipped). */
function largestArray(bytes: Buffer): { start: number; end: number } | undefined {
  const open: number[] = [];
  let best: { start: number; end: number } | undefined;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === QUOTE) i = skipString(bytes, i);
    else if (b === OPEN_ARRAY) open.push(i);
    else if (b === CLOSE_ARRAY) {
      const start = open.pop();
      if (start === undefined) return undefined; // not JSON: JSON.parse will say so
      if (!best || i - start > best.end - best.start) best = { start, end: i };
    }
  }
  return best;
}

/** Index of the closing quote of the string opening at `at`. */
function skipString(bytes: Buffer, at: number): number {
  for (let i = at + 1; i < bytes.length; i++) {
    if (bytes[i] === BACKSLASH) i++;
    else if (bytes[i] === QUOTE) return i;
  }
  return bytes.length;
}

/** Ranges [from, to) of whole elements between `from` and `end`, cut at top-level commas every ~turnBytes. */
function elementGroups(bytes: Buffer, from: number, end: number, turnBytes: number): [number, number][] {
  const groups: [number, number][] = [];
  let depth = 0;
  let groupStart = from;
  for (let i = from; i < end; i++) {
    const b = bytes[i];
    if (b === QUOTE) i = skipString(bytes, i);
    else if (b === OPEN_ARRAY || b === OPEN_OBJECT) depth++;
    else if (b === CLOSE_ARRAY || b === CLOSE_OBJECT) depth--;
    else if (b === COMMA && depth === 0 && i - groupStart >= turnBytes) {
      groups.push([groupStart, i]);
      groupStart = i + 1;
    }
  }
  groups.push([groupStart, end]);
  return groups;
}

/** The envelope with the marker string replaced, in place, by the parsed tensor. */
function replaceMarker(value: unknown, marker: string, tensor: unknown[], depth: number): unknown {
  if (value === marker) return tensor;
  if (value === null || typeof value !== 'object') return value;
  // The envelope around a tensor is a few levels deep; anything deeper is not a request this function reads.
  if (depth > MAX_ENVELOPE_DEPTH) throw new InvalidInput('invalid_body', `the body nests objects more than ${MAX_ENVELOPE_DEPTH} levels deep around its data`);
  const container = value as Record<string, unknown>;
  for (const key of Object.keys(container)) container[key] = replaceMarker(container[key], marker, tensor, depth + 1);
  return value;
}

const MAX_ENVELOPE_DEPTH = 32;
