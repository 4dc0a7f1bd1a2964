/**
 * Training samples/s of trainLocal (what a trainer runs) on one thread and on every thread
 * the function is given, alternated in the same run so a machine whose speed drifts (other
 * work on the cores) tilts both alike. Each figure is the best of `reps` timed epochs.
 */
import { loadBuiltinDigits } from '../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../datasets/types.js';
import { buildModel } from '../services/core/model.js';
import { closeTrainingPool, parallelPhases, resetParallelPhases } from '../services/core/parallel-train.js';
import type { StepPhases } from '../services/core/parallel-worker.js';
import { trainLocal } from '../services/core/train.js';

export interface ParallelTrainResult {
  threads: number;
  batch_size: number;
  samples: number;
  /** trainLocal on `threads` worker threads. */
  samples_per_s: number;
  /** trainLocal on one thread (the tfjs-layers loop). */
  samples_per_s_1thread: number;
  speedup: number;
  runs: { threads: number; samples_per_s: number }[];
  /**
   * Where one thread's step went in the timed multi-thread epochs (ms per step, averaged over
   * steps and threads): forward + backward, gradient out, barriers, sum + update, weights in;
   * on_cpu / queued: of the step, time on a CPU and time ready but waiting for one (Linux).
   */
  step_ms_per_thread?: Record<keyof StepPhases, number>;
}

async function epochSamplesPerS(shard: ImageSet, threads: number, batchSize: number): Promise<number> {
  const model = buildModel(7);
  try {
    const r = await trainLocal(model, shard, { epochs: 1, batchSize, learningRate: 0.001, seed: 3, threads });
    return r.samplesPerSecond;
  } finally {
    model.dispose();
  }
}

export async function benchParallelTraining(opts: { threads: number; batchSize: number; samples: number; reps: number; log: (m: string) => void }): Promise<ParallelTrainResult> {
  const digits = loadBuiltinDigits();
  const shard = subset(digits, Array.from({ length: Math.min(opts.samples, digits.count) }, (_, i) => i));
  const warm = subset(digits, Array.from({ length: opts.batchSize * 3 }, (_, i) => i));
  const runs: ParallelTrainResult['runs'] = [];
  try {
    // Warm-up: thread start-up, wasm compilation and kernel set-up are not training throughput.
    await epochSamplesPerS(warm, 1, opts.batchSize);
    if (opts.threads > 1) await epochSamplesPerS(warm, opts.threads, opts.batchSize);
    resetParallelPhases();
    for (let rep = 0; rep < opts.reps; rep++) {
      for (const threads of opts.threads > 1 ? [1, opts.threads] : [1]) {
        const sps = await epochSamplesPerS(shard, threads, opts.batchSize);
        opts.log(`  ${threads} thread(s): ${sps.toFixed(1)} samples/s`);
        runs.push({ threads, samples_per_s: Math.round(sps * 10) / 10 });
      }
    }
  } finally {
    await closeTrainingPool();
  }
  const { steps, ...phases } = parallelPhases;
  const perStep = steps > 0 ? (Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round((v / steps) * 100) / 100])) as Record<keyof StepPhases, number>) : undefined;
  const best = (t: number) => Math.max(...runs.filter((r) => r.threads === t).map((r) => r.samples_per_s));
  const one = best(1);
  const all = best(opts.threads);
  return { threads: opts.threads, batch_size: opts.batchSize, samples: shard.count, samples_per_s: all, samples_per_s_1thread: one, speedup: Math.round((all / one) * 1000) / 1000, runs, ...(perStep && { step_ms_per_thread: perStep }) };
}
