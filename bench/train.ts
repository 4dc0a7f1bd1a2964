/**
 * train: trainLocal samples/s on one thread and on every thread (data-parallel workers), the
 * PyTorch peer at the same thread count, and benchTrainThroughput (one trainOnBatch loop,
 * per-kernel profile, wasm vs the pure-JS cpu backend).
 */
import { buildModel, getFlatWeights } from '../services/core/model.js';
import { BACKENDS, initBackend, type BackendName } from '../services/core/backend.js';
import { benchmark, int, oneOf, type BenchContext } from './lib/flags.js';
import { TARGETS, mdTable, type BenchOutput } from './lib/output.js';
import { measureCeiling } from './lib/setup.js';
import { benchTrainThroughput } from './train-throughput.js';
import { runTorchPeer } from './torch-peer.js';
import { benchParallelTraining } from './train-parallel.js';
import { trainThreads } from '../services/core/parallel-train.js';
import { ratio } from './lib/stats.js';

export const train = benchmark({
  description: 'training throughput of the CNN (samples/s) on wasm vs cpu',
  flags: {
    backend: oneOf(BACKENDS, 'backend to measure', { default: 'wasm' }),
    batch: int('batch size', { min: 1, max: 4096, default: 32 }),
    steps: int('timed training steps', { min: 1, max: 100_000, default: 30 }),
    'cpu-steps': int('steps on the pure-JS cpu backend, for comparison', { min: 0, max: 10_000, default: 0 }),
    threads: int('training threads of the parallel run (0: every CPU the process is given)', { min: 0, max: 64, default: 0 }),
    samples: int('samples per timed trainLocal epoch', { min: 32, max: 60_000, default: 960 }),
    reps: int('timed epochs per thread count (best one counts)', { min: 1, max: 20, default: 2 }),
  },
  async run(p, ctx: BenchContext): Promise<BenchOutput> {
    const threads = p.threads || trainThreads();
    // The one-thread figure must be the backend a trainer runs (wasm), not tfjs's pure-JS default.
    await initBackend(p.backend as BackendName);
    ctx.log(`trainLocal on 1 and ${threads} thread(s), ${p.samples} samples of batch ${p.batch}, ${p.reps} rep(s)`);
    const par = await benchParallelTraining({ threads, batchSize: p.batch, samples: p.samples, reps: p.reps, log: ctx.log });
    ctx.log(`training ${p.steps} steps of batch ${p.batch} on ${p.backend} (${p.cpu_steps} on cpu)`);
    const r = await benchTrainThroughput({ backend: p.backend, batchSize: p.batch, steps: p.steps, cpuSteps: p.cpu_steps });
    const model = buildModel(7);
    const ceiling = measureCeiling(getFlatWeights(model), [1, p.batch, 1000], 1000);
    model.dispose();
    ctx.log('running the PyTorch peer (python3-torch, 1 thread) in the same run, if installed');
    const peer = await runTorchPeer();
    const peerN = threads === 1 ? peer : await runTorchPeer(4096, threads);
    const vsTorchN = ratio(par.samples_per_s, peerN?.train_samples_per_s);
    const infer = ceiling.find((c) => c.batch === 1000)?.images_per_s ?? null;
    const headline = {
      backend: r.backend,
      batch_size: r.batch_size,
      threads,
      samples_per_s: par.samples_per_s,
      samples_per_s_1thread: par.samples_per_s_1thread,
      threads_speedup: par.speedup,
      torch_peer_same_threads: peerN ?? null,
      train_vs_torch_same_threads: vsTorchN,
      train_on_batch_samples_per_s: r.samples_per_s,
      infer_samples_per_s: infer,
      step_ms_median: r.step_ms_median,
      torch_peer: peer ?? null,
      train_vs_torch: peer ? Math.round((r.samples_per_s / peer.train_samples_per_s) * 1000) / 1000 : null,
      infer_vs_torch: peer && infer ? Math.round((infer / peer.infer_samples_per_s) * 1000) / 1000 : null,
      profile_top: r.profile_top,
    };
    return {
      backend: r.backend,
      params: p,
      headline,
      results: { ...r, parallel: par, ceiling, torch_peer: peer ?? null, torch_peer_same_threads: peerN ?? null },
      targets: [
        { name: 'training samples/s at batch 32, all threads', target: '>= 600', measured: par.samples_per_s, unit: 'samples/s', met: par.samples_per_s >= 600 },
        TARGETS.trainThreadsSpeedup(par.speedup, threads),
        TARGETS.trainVsTorch(vsTorchN, threads),
      ],
      report: [
        '## Training on every thread',
        '',
        mdTable(['threads', 'samples/s (trainLocal)', '1 thread samples/s', 'speed-up', 'PyTorch same threads', 'edgefl / PyTorch'], [[threads, par.samples_per_s, par.samples_per_s_1thread, par.speedup, peerN?.train_samples_per_s ?? 'not run', vsTorchN ?? '']]),
        '',
        ...(par.step_ms_per_thread ? [`One thread's step on ${threads} threads (ms, mean): ${Object.entries(par.step_ms_per_thread).map(([k, v]) => `${k} ${v}`).join(', ')}.`, ''] : []),
        '## Training throughput (one trainOnBatch loop)',
        '',
        mdTable(['backend', 'batch', 'samples/s', 'step ms (median)', 'cpu samples/s', 'speed-up vs cpu'], [[r.backend, r.batch_size, r.samples_per_s, r.step_ms_median, r.cpu_samples_per_s, r.speedup_vs_cpu]]),
        '',
        'Top kernels of one training step:',
        '',
        mdTable(['kernel', 'ms'], r.profile_top.map((k) => [k.kernel, k.ms])),
        '',
        `Inference in the same process (for scale): ${ceiling.map((c) => `batch ${c.batch}: ${c.images_per_s} images/s`).join(', ')}.`,
        '',
        peer
          ? `PyTorch peer (${peer.peer}, ${peer.threads} thread, same run): ${peer.train_samples_per_s} training samples/s, ${peer.infer_samples_per_s} inference samples/s. edgefl/PyTorch: training ${headline.train_vs_torch}, inference ${headline.infer_vs_torch}.`
          : 'PyTorch peer not run (needs Debian python3-torch and ../shared/reference/torch_cnn_peer.py or EDGEFL_TORCH_PEER).',
      ].join('\n'),
      charts: [],
    };
  },
});
