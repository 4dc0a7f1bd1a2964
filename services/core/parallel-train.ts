/**
 * Data-parallel training on every core the function is given: each batch is split by rows
 * across worker threads (parallel-worker.ts), each with its own wasm backend and a replica of
 * the weights and optimiser; the threads sum their gradients through shared memory and apply
 * the same update, so the result is the single-threaded one up to float error (the batch
 * gradient is summed in a different order). The main thread only deals out rows, so the event
 * loop stays free for health checks while a round trains.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { compiledSibling } from '../shared/compiled.js';
import { createRng } from '../../datasets/rng.js';
import type { ImageSet } from '../../datasets/types.js';
import { weightSpecs } from './forward.js';
import { dropoutStepSeed, getFlatWeights, modelSpec, setFlatWeights } from './model.js';
import { REFERENCE_CNN, inputSize, type ModelSpec } from './model-spec.js';
import type { tfl } from './tf.js';
import { ENV } from '../shared/config.js';
import { cgroupLimitMiB } from '../shared/memory.js';
import { TrainingProgress, epochBatches } from './train-progress.js';
import type { TrainOptions, TrainResult } from './train.js';
import type { StepMessage, StepPhases, WorkerReply, WorkerRequest } from './parallel-worker.js';
import { StepBarrier } from './step-barrier.js';

/** CPUs in a cgroup v2 quota ("200000 100000" → 2), or undefined without one (Knative's CPU limit lands here). */
export function cgroupCpus(cpuMax: string | undefined): number | undefined {
  const [quota, period] = (cpuMax ?? '').trim().split(/\s+/);
  if (!quota || quota === 'max' || !period) return undefined;
  const cpus = Number(quota) / Number(period);
  return Number.isFinite(cpus) && cpus > 0 ? Math.max(1, Math.floor(cpus)) : undefined;
}

function readCpuMax(): string | undefined {
  try {
    return readFileSync('/sys/fs/cgroup/cpu.max', 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Memory one more training thread takes (its V8 heap, wasm heap, weights, optimiser slice, a
 * batch). Measured for the reference CNN: about 155 MiB at first, 55–60 MiB since the young-
 * generation cap and two malloc arenas (`bench memory`, 2,000 digits). The budget keeps the
 * first figure: a spec larger than the reference CNN needs more per thread, and a thread too
 * many is an OOM kill where one too few is a slower round.
 */
export const MIB_PER_EXTRA_THREAD = 160;
/** A trainer on one thread at its peak during an epoch: 266 MiB measured at first, VmHWM 216–224 MiB now (budgeted as above). */
const MIB_ONE_THREAD = 280;

/**
 * Training threads: EDGEFL_TRAIN_THREADS, else every CPU the function is given (the cgroup
 * quota, at most the cores), and no more than its memory limit holds: a thread costs its own
 * wasm heap and weights, so a 512 MiB trainer trains on at most two.
 */
export function trainThreads(env: NodeJS.ProcessEnv = process.env, cpuMax: string | undefined = readCpuMax(), cores = os.availableParallelism(), containerMiB: () => number | undefined = cgroupLimitMiB): number {
  const forced = Number(env[ENV.trainThreads]);
  if (Number.isInteger(forced) && forced >= 1) return Math.min(forced, 64);
  const configured = Number(env[ENV.memoryLimitMiB]);
  const memoryMiB = Number.isInteger(configured) && configured > 0 ? configured : containerMiB();
  const byMemory = memoryMiB === undefined ? Infinity : 1 + Math.floor(Math.max(0, memoryMiB - MIB_ONE_THREAD) / MIB_PER_EXTRA_THREAD);
  return Math.max(1, Math.min(cores, cgroupCpus(cpuMax) ?? cores, byMemory));
}

/** The compiled worker (tests run the TypeScript; see compiledSibling). */
export function workerScript(): string | undefined {
  return compiledSibling(import.meta.url, 'parallel-worker.js');
}

/**
 * The young generation each training thread's V8 heap may grow to. A step allocates many short-
 * lived tensor objects, and V8's default (3 × a 16 MiB semi-space on 64-bit) lets each thread
 * keep about 48 MiB of them committed; at 6 MiB a 2-thread epoch peaked 30–50 MiB lower in RSS
 * with the same samples/s (two alternated runs of each, 6,000 digits).
 */
export const TRAINING_THREAD_YOUNG_GENERATION_MIB = 6;

/** A fixed set of training threads; kept between rounds so a round does not pay for their start-up. */
class TrainingPool {
  private readonly workers: Worker[];
  /** Per thread, the requests sent and not yet answered, oldest first (a thread answers in order). */
  private readonly pending: Array<Array<{ resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>>;
  broken = false;

  constructor(readonly threads: number, script: string) {
    this.pending = Array.from({ length: threads }, () => []);
    this.workers = Array.from({ length: threads }, (_, i) => {
      const w = new Worker(script, { resourceLimits: { maxYoungGenerationSizeMb: TRAINING_THREAD_YOUNG_GENERATION_MIB } });
      w.unref(); // an idle pool never keeps the process alive
      w.on('message', (r: WorkerReply) => {
        const waiter = this.pending[i]!.shift();
        if (r.type === 'error') waiter?.reject(new Error(`training thread failed: ${r.message}`));
        else waiter?.resolve(r);
      });
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => this.fail(new Error(`training thread exited (${code})`)));
      return w;
    });
  }

  /** A thread that dies fails every request in flight: the others would wait at the barrier for it. */
  private fail(e: Error): void {
    this.broken = true;
    for (const queue of this.pending) for (const waiter of queue.splice(0)) waiter.reject(e);
  }

  /**
   * Sends one request to every thread; resolves with all replies. Requests may be sent before
   * earlier ones are answered (each thread works through its queue in order). Any error
   * breaks the pool.
   */
  send(messages: WorkerRequest[], transfer: (m: WorkerRequest) => ArrayBuffer[] = () => []): Promise<WorkerReply[]> {
    if (this.broken) return Promise.reject(new Error('the training threads stopped'));
    const replies = this.workers.map(
      (w, i) =>
        new Promise<WorkerReply>((resolve, reject) => {
          this.pending[i]!.push({ resolve, reject });
          w.postMessage(messages[i]!, transfer(messages[i]!));
        }),
    );
    return Promise.all(replies).catch(async (e: unknown) => {
      await this.close();
      throw e;
    });
  }

  async close(): Promise<void> {
    this.broken = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

let pool: TrainingPool | undefined;

function poolOf(threads: number, script: string): TrainingPool {
  if (pool && !pool.broken && pool.threads === threads) return pool;
  void pool?.close();
  pool = new TrainingPool(threads, script);
  return pool;
}

/** Stops the training threads (tests and benchmarks; a serverless function just exits). */
export async function closeTrainingPool(): Promise<void> {
  await pool?.close();
  pool = undefined;
}

/** Rows [start, end) of an n-row batch for each of `threads` threads, as even as possible, leading threads larger. */
export function splitRows(n: number, threads: number): Array<[number, number]> {
  const base = Math.floor(n / threads);
  const extra = n % threads;
  let at = 0;
  return Array.from({ length: threads }, (_, t) => {
    const size = base + (t < extra ? 1 : 0);
    const range: [number, number] = [at, at + size];
    at += size;
    return range;
  });
}

/** Whether `model` is the spec's model (same weight names and shapes), which the threads rebuild from the spec. */
export function modelMatchesSpec(model: tfl.LayersModel, spec: ModelSpec): boolean {
  const a = modelSpec(model);
  const b = weightSpecs(spec);
  return a.length === b.length && a.every((t, i) => t.name === b[i]!.name && t.shape.join() === b[i]!.shape.join());
}

/** Whether trainLocal should hand this call to the threads. */
export function parallelPlan(model: tfl.LayersModel, opts: TrainOptions): { threads: number; script: string; spec: ModelSpec } | undefined {
  const threads = opts.threads ?? trainThreads();
  const spec = opts.spec ?? REFERENCE_CNN;
  const script = threads > 1 ? workerScript() : undefined;
  if (!script || !modelMatchesSpec(model, spec)) return undefined;
  return { threads, script, spec };
}

/**
 * trainLocal on `threads` threads: the same shuffles, batches and dropout masks as the
 * single-threaded loop, the batch gradient summed across threads. Leaves the trained weights
 * in `model`.
 */
export function trainParallel(...args: Parameters<typeof trainOnPool>): Promise<TrainResult> {
  // One training at a time per pool: the threads hold one replica each (several in-process trainers share them).
  const run = turn.then(() => trainOnPool(...args));
  turn = run.catch(() => undefined);
  return run;
}

let turn: Promise<unknown> = Promise.resolve();

/** Steps queued to the threads at once: the next is already waiting when a step ends. */
const STEPS_AHEAD = 2;

/** Each thread's rows of one batch: pixels (NHWC) and labels, copied out of the shard in batch order. */
function stepMessages(data: ImageSet, order: Uint32Array, start: number, n: number, rows: Array<[number, number]>, size: number, dropoutSeed: number): StepMessage[] {
  return rows.map(([from, to]) => {
    const pixels = new Float32Array((to - from) * size);
    const labels = new Int32Array(to - from);
    for (let i = from; i < to; i++) {
      const src = order[start + i]!;
      pixels.set(data.images.subarray(src * size, (src + 1) * size), (i - from) * size);
      labels[i - from] = data.labels[src]!;
    }
    return { type: 'step', pixels, labels, offset: from, total: n, dropoutSeed };
  });
}

/** Milliseconds per phase summed over every step and thread since the last resetParallelPhases (benchmarks). */
export const parallelPhases: StepPhases & { steps: number } = { compute: 0, copyOut: 0, wait: 0, update: 0, copyIn: 0, onCpu: 0, queued: 0, steps: 0 };

export function resetParallelPhases(): void {
  for (const k of Object.keys(parallelPhases) as Array<keyof typeof parallelPhases>) parallelPhases[k] = 0;
}

function addPhases(ms: StepPhases): void {
  for (const k of Object.keys(ms) as Array<keyof StepPhases>) parallelPhases[k] += ms[k];
  parallelPhases.steps++;
}

async function trainOnPool(
  model: tfl.LayersModel,
  data: ImageSet,
  opts: TrainOptions,
  plan: { threads: number; script: string; spec: ModelSpec },
): Promise<TrainResult> {
  if (data.count === 0) throw new Error('cannot train on an empty shard');
  const { threads, spec } = plan;
  const p = poolOf(threads, plan.script);
  const size = inputSize(spec);
  const flat = getFlatWeights(model);
  const grads = new SharedArrayBuffer(threads * flat.length * 4);
  const weights = new SharedArrayBuffer(flat.length * 4);
  new Float32Array(weights).set(flat);
  const barrier = StepBarrier.buffer();
  const common = { spec, flat, optimizer: opts.optimizer ?? 'adam', learningRate: opts.learningRate, proximalMu: opts.proximalMu ?? 0, grads, weights, barrier, threads } as const;
  const slices = splitRows(flat.length, threads);
  await p.send(slices.map((slice, index) => ({ type: 'reset', ...common, index, slice })));

  const rng = createRng(opts.seed ?? 1);
  const dropout = opts.dropout ?? { runSeed: opts.seed ?? 1, node: '', round: 0 };
  const progress = new TrainingProgress(data.count, opts);
  const run = { stopped: false };
  // Steps are queued ahead, so epoch boundaries are queued too and reach `progress` in step order.
  const queue: Array<{ n: number; replies: Promise<WorkerReply[]> } | { mark: () => void }> = [];
  const epochs = { startEpoch: (e: number) => queue.push({ mark: () => progress.startEpoch(e) }), endEpoch: () => queue.push({ mark: () => progress.endEpoch() }) };
  let stepsQueued = 0;
  const settleOldest = async () => {
    const item = queue.shift()!;
    if ('mark' in item) return item.mark();
    stepsQueued--;
    let lossSum = 0;
    let correct = 0;
    for (const r of await item.replies) if (r.type === 'stepped') (lossSum += r.lossSum), (correct += r.correct), addPhases(r.ms);
    await progress.step(item.n, lossSum, correct);
  };
  let posted = 0;
  try {
    for (const { order, start, n } of epochBatches(data.count, opts, rng, epochs, run)) {
      const dropoutSeed = dropoutStepSeed(dropout.runSeed, dropout.node, dropout.round, posted++);
      const messages = stepMessages(data, order, start, n, splitRows(n, threads), size, dropoutSeed);
      const replies = p.send(messages, (m) => (m.type === 'step' ? [m.pixels.buffer as ArrayBuffer, m.labels.buffer as ArrayBuffer] : []));
      // Observed now: a queued step may fail before its turn to be awaited (the first failure is the one thrown).
      replies.catch(() => undefined);
      queue.push({ n, replies });
      // The threads go on to the queued step without waiting for this thread to deal it.
      if (++stepsQueued >= STEPS_AHEAD) while (stepsQueued >= STEPS_AHEAD) await settleOldest();
    }
    while (queue.length > 0) await settleOldest();
  } finally {
    // A failed step fails the ones queued behind it too: the training ends when they have.
    await Promise.allSettled(queue.map((q) => ('replies' in q ? q.replies : undefined)));
  }
  setFlatWeights(model, new Float32Array(weights).slice());
  return progress.result(run.stopped);
}
