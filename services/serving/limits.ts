import { ENV } from '../shared/config.js';
import { cgroupLimitMiB, memoryLimit, type MemoryLimit } from '../shared/memory.js';
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { PIXELS } from '../core/model.js';

/** The serving limit of the Knative manifests (services/kube/constants.ts RESOURCES.serving). */
export const DEFAULT_MEMORY_LIMIT_MIB = 256;
export const MEMORY_LIMIT_ENV = ENV.memoryLimitMiB;

/**
 * What an idle serving function holds before any request: Node, Express, TensorFlow.js with
 * its wasm heap, two model copies (current and standby) and the PostgreSQL pool. Measured at
 * 125-135 MiB RSS; the rest of the limit is the budget requests may use.
 */
export const BASELINE_MIB = 150;
/** Requests get this share of what is left above the baseline; the rest absorbs what the garbage collector and the allocator have not given back yet (measured: a burst of requests costs about twice what they hold at once). */
const WORK_SHARE = 0.45;

/**
 * Memory a JSON body takes while it is read, parsed and turned into a tensor: the received
 * buffer, the decoded string and the parsed strings (3 bytes per body byte), an 8-byte slot
 * and a 4-byte Float32 per value, and ~64 bytes per array or object (header and backing store).
 * A tensor read dense (dense-json.ts) takes only its 4-byte Float32s; when it is then refused
 * or converted through JSON.parse after all, it is still held: 4 more per value.
 */
export function jsonParseCost(bytes: number, values: number, containers: number): number {
  return 3 * bytes + 16 * values + 64 * containers;
}
/** The densest legal body ("0," per value, 2 bytes) costs 3 + 16/2 = 11 bytes per body byte. */
export const JSON_BYTES_PER_BODY_BYTE = 11;
/**
 * JSON.parse and the image pipeline run on the event loop, so their size is also a latency
 * bound: readiness must answer within 200 ms under any load. JSON.parse reads numbers at
 * 35-100 MB/s here (so at most ~120 ms for a body on a busy 2-core machine) but arrays at
 * only ~1.3 million/s, and a JPEG decodes at ~160 ms per megapixel on the event loop.
 */
export const LATENCY_MAX_BODY_BYTES = 4 * 2 ** 20;
export const LATENCY_MAX_CONTAINERS = 128 * 1024;
export const LATENCY_MAX_IMAGE_PIXELS = 2 ** 20;
/**
 * Per decoded image pixel, measured (RSS while a 2048x2048 PNG decodes): pngjs holds the
 * inflated rows, the unfiltered copy and the RGBA bitmap at once, then our grey plane.
 */
export const IMAGE_BYTES_PER_PIXEL = 28;
/** Per image in the tensor: its Float32 input plus a share of the chunk's activations. */
export const TENSOR_BYTES_PER_IMAGE = PIXELS * 4 * 2;


export type { MemoryLimit };

export interface ServingLimits {
  memory: MemoryLimit;
  /** Bytes that requests in flight may hold together; more is shed with 429. */
  workBudgetBytes: number;
  maxBodyBytes: number;
  maxBatch: number;
  /** Arrays and objects one JSON body may hold (JSON.parse time; see LATENCY_MAX_CONTAINERS). */
  maxContainers: number;
  /** Pixels decoded for one image request (all files together), checked from headers first. */
  imagePixelBudget: number;
  /** Images per tensor call; the event loop gets a turn between chunks. */
  predictChunk: number;
}

type ReadFile = (path: string) => string;
const readText: ReadFile = (p) => readFileSync(p, 'utf8');

/** The memory this function may use: EDGEFL_MEMORY_LIMIT_MIB, else its cgroup limit (v2, then v1), else the manifests' 256 MiB. */
export function detectMemoryLimit(env: Record<string, string | undefined> = process.env, read: ReadFile = readText): MemoryLimit {
  const raw = env[MEMORY_LIMIT_ENV];
  let configured: number | undefined;
  if (raw !== undefined && raw !== '') {
    configured = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(configured) || configured < 64) throw new Error(`${MEMORY_LIMIT_ENV} must be an integer number of MiB >= 64; got '${raw}'`);
  }
  return memoryLimit(configured, DEFAULT_MEMORY_LIMIT_MIB, () => cgroupLimitMiB(read));
}

/**
 * Limits derived from the memory limit; configured limits (EDGEFL_MAX_BATCH,
 * EDGEFL_MAX_BODY_BYTES) can only lower them. The body limit is also capped for latency
 * (LATENCY_MAX_BODY_BYTES) unless EDGEFL_MAX_BODY_BYTES is set explicitly
 * (`bodyLimitExplicit`): then a larger function may take larger bodies, at the price of a
 * longer JSON.parse on the event loop.
 */
export function servingLimits(memory: MemoryLimit, configured: { maxBatch: number; maxBodyBytes: number }, opts: { bodyLimitExplicit?: boolean } = {}): ServingLimits {
  const workBudgetBytes = Math.max(8 * 2 ** 20, Math.floor((memory.mib - BASELINE_MIB) * 2 ** 20 * WORK_SHARE));
  const latencyCap = opts.bodyLimitExplicit ? Infinity : LATENCY_MAX_BODY_BYTES;
  const maxBodyBytes = Math.min(configured.maxBodyBytes, latencyCap, Math.floor(workBudgetBytes / JSON_BYTES_PER_BODY_BYTE));
  const maxBatch = Math.min(configured.maxBatch, Math.floor(workBudgetBytes / TENSOR_BYTES_PER_IMAGE));
  const imagePixelBudget = Math.min(LATENCY_MAX_IMAGE_PIXELS, Math.floor(workBudgetBytes / IMAGE_BYTES_PER_PIXEL));
  return { memory, workBudgetBytes, maxBodyBytes, maxBatch, maxContainers: LATENCY_MAX_CONTAINERS, imagePixelBudget, predictChunk: 32 };
}

/**
 * V8 heap limits for a serving process with `memoryMiB` of memory (set through NODE_OPTIONS by
 * whoever starts it: the manifests, `edgefl up`, the benchmarks). With them V8's own concurrent
 * collector keeps the heap inside the pod; without them the heap is sized from the machine and
 * the function must force full collections, which stall the event loop (readiness p99 407 ms
 * against 71 ms with these flags in the hostile-serving benchmark, peak RSS 225 vs 218 MiB).
 */
export function servingHeapOptions(memoryMiB: number): string {
  return `--max-old-space-size=${Math.floor(memoryMiB / 2)} --max-semi-space-size=2`;
}

/** Whether this process runs with a heap bounded for its memory limit (servingHeapOptions or tighter). */
export function heapBoundedFor(memoryMiB: number, heapLimitBytes = v8.getHeapStatistics().heap_size_limit): boolean {
  return heapLimitBytes <= memoryMiB * 0.6 * 2 ** 20;
}

/** NODE_OPTIONS for a serving child: the parent's options plus the heap limits for `memoryMiB`. */
export function servingNodeOptions(memoryMiB: number, inherited = process.env.NODE_OPTIONS ?? ''): string {
  return [inherited, servingHeapOptions(memoryMiB)].filter(Boolean).join(' ');
}
