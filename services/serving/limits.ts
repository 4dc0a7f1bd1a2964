import { readFileSync } from 'node:fs';
import { PIXELS } from '../core/model.js';

/** The serving limit of the Knative manifests (services/kube/constants.ts RESOURCES.serving). */
export const DEFAULT_MEMORY_LIMIT_MIB = 256;
export const MEMORY_LIMIT_ENV = 'EDGEFL_MEMORY_LIMIT_MIB';

/**
 * What an idle serving function holds before any request: Node, Express, TensorFlow.js with
 * its wasm heap, two model copies (current and standby) and the PostgreSQL pool. Measured at
 * 125-135 MiB RSS; the rest of the limit is the budget requests may use.
 */
export const BASELINE_MIB = 150;
/** Requests get this share of what is left above the baseline; the rest absorbs GC lag. */
const WORK_SHARE = 0.7;

/**
 * Peak bytes of memory per byte of a JSON body while it is read and parsed: the received
 * buffer, the decoded string, the parsed arrays (8 bytes per number, and a number can be as
 * short as "0," in the body), and the Float32 tensor made from them.
 */
export const JSON_BYTES_PER_BODY_BYTE = 8;
/** Per decoded image pixel: the codec's inflated rows and RGBA output, then our grey plane. */
export const IMAGE_BYTES_PER_PIXEL = 12;
/** Per image in the tensor: its Float32 input plus a share of the chunk's activations. */
export const TENSOR_BYTES_PER_IMAGE = PIXELS * 4 * 2;

export interface MemoryLimit {
  mib: number;
  source: 'env' | 'cgroup' | 'default';
}

export interface ServingLimits {
  memory: MemoryLimit;
  /** Bytes that requests in flight may hold together; more is shed with 429. */
  workBudgetBytes: number;
  maxBodyBytes: number;
  maxBatch: number;
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
  if (raw !== undefined && raw !== '') {
    const mib = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(mib) || mib < 64) throw new Error(`${MEMORY_LIMIT_ENV} must be an integer number of MiB >= 64; got '${raw}'`);
    return { mib, source: 'env' };
  }
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    let text: string;
    try {
      text = read(file).trim();
    } catch {
      continue;
    }
    const bytes = /^\d+$/.test(text) ? Number(text) : NaN;
    // "max" (v2) or a page-rounded 2^63 (v1) mean no limit.
    if (Number.isFinite(bytes) && bytes > 0 && bytes < 2 ** 50) return { mib: Math.floor(bytes / 2 ** 20), source: 'cgroup' };
  }
  return { mib: DEFAULT_MEMORY_LIMIT_MIB, source: 'default' };
}

/** Limits derived from the memory limit; configured limits (EDGEFL_MAX_BATCH, EDGEFL_MAX_BODY_BYTES) can only lower them. */
export function servingLimits(memory: MemoryLimit, configured: { maxBatch: number; maxBodyBytes: number }): ServingLimits {
  const workBudgetBytes = Math.max(8 * 2 ** 20, Math.floor((memory.mib - BASELINE_MIB) * 2 ** 20 * WORK_SHARE));
  const maxBodyBytes = Math.min(configured.maxBodyBytes, Math.floor(workBudgetBytes / JSON_BYTES_PER_BODY_BYTE));
  const maxBatch = Math.min(configured.maxBatch, Math.floor(workBudgetBytes / TENSOR_BYTES_PER_IMAGE));
  const imagePixelBudget = Math.floor(workBudgetBytes / IMAGE_BYTES_PER_PIXEL);
  return { memory, workBudgetBytes, maxBodyBytes, maxBatch, imagePixelBudget, predictChunk: 64 };
}
