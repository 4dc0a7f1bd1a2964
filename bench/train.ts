/** train: wraps benchTrainThroughput (training samples/s on wasm vs the pure-JS cpu backend). */
import { buildModel, getFlatWeights } from '../services/shared/model.js';
import type { BackendName } from '../services/shared/backend.js';
import { BenchUsageError, intFlag, strFlag, type BenchContext, type BenchModule, type Values } from './lib/flags.js';
import { mdTable, type BenchOutput } from './lib/output.js';
import { measureCeiling } from './lib/setup.js';
import { benchTrainThroughput } from './train-throughput.js';

export interface TrainParams extends Record<string, unknown> {
  backend: BackendName;
  batch: number;
  steps: number;
  cpu_steps: number;
}

export function parseTrain(v: Values): TrainParams {
  const backend = strFlag(v, 'backend') ?? 'wasm';
  if (!['wasm', 'cpu', 'tensorflow'].includes(backend)) throw new BenchUsageError(`--backend must be wasm, cpu or tensorflow; got '${backend}'`);
  return { backend: backend as BackendName, batch: intFlag(v, 'batch', 32, 1, 4096), steps: intFlag(v, 'steps', 30, 1, 100_000), cpu_steps: intFlag(v, 'cpu-steps', 2, 0, 10_000) };
}

export const train: BenchModule<TrainParams> = {
  description: 'training throughput of the CNN (samples/s) on wasm vs cpu',
  options: { backend: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' }, 'cpu-steps': { type: 'string' } },
  params: parseTrain,
  async run(p: TrainParams, ctx: BenchContext): Promise<BenchOutput> {
    ctx.log(`training ${p.steps} steps of batch ${p.batch} on ${p.backend} (${p.cpu_steps} on cpu)`);
    const r = await benchTrainThroughput({ backend: p.backend, batchSize: p.batch, steps: p.steps, cpuSteps: p.cpu_steps });
    const model = buildModel(7);
    const ceiling = measureCeiling(getFlatWeights(model), [1, p.batch], 500);
    model.dispose();
    return {
      backend: r.backend,
      params: p,
      results: { ...r, ceiling },
      targets: [],
      report: [
        '## Training throughput',
        '',
        mdTable(['backend', 'batch', 'samples/s', 'step ms (median)', 'cpu samples/s', 'speed-up vs cpu'], [[r.backend, r.batch_size, r.samples_per_s, r.step_ms_median, r.cpu_samples_per_s, r.speedup_vs_cpu]]),
        '',
        'Top kernels of one training step:',
        '',
        mdTable(['kernel', 'ms'], r.profile_top.map((k) => [k.kernel, k.ms])),
        '',
        `Inference in the same process (for scale): ${ceiling.map((c) => `batch ${c.batch}: ${c.images_per_s} images/s`).join(', ')}.`,
      ].join('\n'),
      charts: [],
    };
  },
};
