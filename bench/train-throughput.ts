/**
 * Training throughput of the edgefl CNN on one TensorFlow.js backend: samples/s over
 * timed trainOnBatch steps, plus a per-kernel profile of one step to show where the
 * time goes. Optionally a few steps on the pure-JS cpu backend for a speed-up ratio.
 */
import { pathToFileURL } from 'node:url';
import { tf, tfl } from '../services/core/tf.js';
import { initBackend, type BackendName } from '../services/core/backend.js';
import { buildModel, NUM_CLASSES, PIXELS } from '../services/core/model.js';
import { loadBuiltinDigits } from '../datasets/builtin-mnist.js';

export interface TrainThroughputOptions {
  backend?: BackendName;
  batchSize?: number;
  steps?: number;
  /** Steps timed on the cpu backend for `cpu_samples_per_s`; 0 skips it (cpu takes seconds per step). */
  cpuSteps?: number;
}

export interface KernelTime {
  kernel: string;
  ms: number;
}

export interface TrainThroughputResult {
  backend: string;
  batch_size: number;
  samples_per_s: number;
  step_ms_median: number;
  profile_top: KernelTime[];
  cpu_samples_per_s?: number;
  speedup_vs_cpu?: number;
}

interface Batch {
  xs: tf.Tensor4D;
  ys: tf.Tensor2D;
}

/** Real digits rather than noise, so the loss (and any data-dependent kernel path) behaves as in training. */
function makeBatches(count: number, batchSize: number): Batch[] {
  const digits = loadBuiltinDigits();
  return Array.from({ length: count }, (_, b) => {
    const start = (b * batchSize) % (digits.count - batchSize);
    const pixels = digits.images.subarray(start * PIXELS, (start + batchSize) * PIXELS);
    const labels = Array.from(digits.labels.subarray(start, start + batchSize));
    return {
      xs: tf.tensor4d(pixels, [batchSize, 28, 28, 1]),
      ys: tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), NUM_CLASSES) as tf.Tensor2D),
    };
  });
}

function compiledModel(): tfl.Sequential {
  const model = buildModel();
  model.compile({ optimizer: tf.train.sgd(0.05), loss: 'categoricalCrossentropy' });
  return model;
}

/** trainOnBatch reads the loss back, so each step is fully finished when it resolves. */
async function timeSteps(model: tfl.LayersModel, batches: Batch[], steps: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const { xs, ys } = batches[i % batches.length]!;
    const start = performance.now();
    await model.trainOnBatch(xs, ys);
    times.push(performance.now() - start);
  }
  return times;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Kernel time of one step, summed per kernel name, largest first. */
export async function profileStep(model: tfl.LayersModel, batch: Batch, top = 12): Promise<KernelTime[]> {
  const info = await tf.profile(async () => {
    await model.trainOnBatch(batch.xs, batch.ys);
  });
  const totals = new Map<string, number>();
  for (const k of info.kernels) totals.set(k.name, (totals.get(k.name) ?? 0) + Number(k.kernelTimeMs));
  return [...totals]
    .map(([kernel, ms]) => ({ kernel, ms: Math.round(ms * 100) / 100 }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top);
}

async function measure(batchSize: number, steps: number, warmup: number, profile: boolean): Promise<{ samplesPerS: number; medianMs: number; profile: KernelTime[] }> {
  const model = compiledModel();
  const batches = makeBatches(Math.min(steps, 8), batchSize);
  try {
    await timeSteps(model, batches, warmup);
    const times = await timeSteps(model, batches, steps);
    const totalMs = times.reduce((a, b) => a + b, 0);
    return { samplesPerS: (batchSize * steps * 1000) / totalMs, medianMs: median(times), profile: profile ? await profileStep(model, batches[0]!) : [] };
  } finally {
    model.dispose();
    for (const b of batches) tf.dispose([b.xs, b.ys]);
  }
}

export async function benchTrainThroughput(opts: TrainThroughputOptions = {}): Promise<TrainThroughputResult> {
  const batchSize = opts.batchSize ?? 32;
  const steps = opts.steps ?? 30;
  const info = await initBackend(opts.backend);
  const main = await measure(batchSize, steps, 3, true);
  const result: TrainThroughputResult = {
    backend: info.name,
    batch_size: batchSize,
    samples_per_s: Math.round(main.samplesPerS * 10) / 10,
    step_ms_median: Math.round(main.medianMs * 100) / 100,
    profile_top: main.profile,
  };
  const cpuSteps = opts.cpuSteps ?? 2;
  if (cpuSteps > 0 && info.name !== 'cpu') {
    await tf.setBackend('cpu');
    try {
      const cpu = await measure(batchSize, cpuSteps, 1, false);
      result.cpu_samples_per_s = Math.round(cpu.samplesPerS * 10) / 10;
      result.speedup_vs_cpu = Math.round((main.samplesPerS / cpu.samplesPerS) * 10) / 10;
    } finally {
      await tf.setBackend(info.name);
    }
  }
  return result;
}

function argValue(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchTrainThroughput({
    backend: (argValue('backend') as BackendName | undefined) ?? 'wasm',
    batchSize: Number(argValue('batch') ?? 32),
    steps: Number(argValue('steps') ?? 30),
    cpuSteps: Number(argValue('cpu-steps') ?? 2),
  });
  console.log(JSON.stringify(result, null, 2));
}
