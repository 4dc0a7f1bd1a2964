import { describe, expect, it } from 'vitest';
import { parseFlags } from '../services/cli/flags.js';
import { UP_FLAGS } from '../services/cli/up.js';
import { DP_SGD_BENCH_BATCH, DP_SGD_TRAINING, dpRunFields } from '../services/cli/dp-flags.js';
import { SCATTER_LINEAR } from '../services/core/model-zoo.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { dpSgdPlan } from '../services/core/privacy/dp-sgd.js';
import { dpSgdEpsilon } from '../services/core/privacy/rdp.js';
import { clientLevelEpsilon } from '../services/core/privacy/dp-fedavg.js';

const fields = (...argv: string[]) => {
  const v = parseFlags(UP_FLAGS, argv);
  return dpRunFields(v, { ...v, testSize: v['test-size'], maxTrainSamples: v['max-train-samples'] });
};

describe('edgefl up --dp', () => {
  it('without --dp asks for nothing, and refuses --dp-* flags that would be ignored', () => {
    expect(fields()).toEqual({});
    expect(() => fields('--dp-epsilon', '3')).toThrow(/--dp-epsilon needs --dp local or --dp client/);
  });

  it('--dp local: DP-SGD settings and the σ whose ε over every round of an average shard stays within the budget', () => {
    const f = fields('--dp', 'local', '--dp-epsilon', '3', '--rounds', '10', '--epochs', '2');
    expect(f).toMatchObject({ ...DP_SGD_TRAINING, dp: { mode: 'local', epsilonBudget: 3, delta: 1e-5, clip: 1 } });
    const plan = dpSgdPlan(Math.floor(8000 / 3), 2, DP_SGD_TRAINING.batchSize, f.dp!.noiseMultiplier);
    const eps = dpSgdEpsilon({ ...plan, steps: plan.steps * 10, delta: 1e-5 }).epsilon;
    expect(eps).toBeLessThanOrEqual(3);
    expect(eps).toBeGreaterThan(2.99);
    // The whole run config is valid as POST /runs would take it.
    expect(parseRunConfig({ rounds: 10, epochs: 2, ...f }).dp?.noiseMultiplier).toBe(f.dp!.noiseMultiplier);
  });

  it("--dp local trains at the bench's batch of 512 where the model's batches fit a trainer's 512 MiB, else 256, and prices σ for that batch", () => {
    const v = parseFlags(UP_FLAGS, ['--dp', 'local', '--dp-epsilon', '8', '--rounds', '20', '--epochs', '2']);
    const shape = { ...v, testSize: v['test-size'], maxTrainSamples: v['max-train-samples'] };
    const reference = dpRunFields(v, shape);
    const scatter = dpRunFields(v, { ...shape, model: SCATTER_LINEAR });
    expect(reference.batchSize).toBe(256);
    expect(scatter.batchSize).toBe(DP_SGD_BENCH_BATCH);
    // A batch twice as large samples each record twice as often: it needs more noise for the same ε.
    expect(scatter.dp!.noiseMultiplier).toBeGreaterThan(reference.dp!.noiseMultiplier);
    const plan = dpSgdPlan(Math.floor(8000 / 3), 2, DP_SGD_BENCH_BATCH, scatter.dp!.noiseMultiplier);
    expect(dpSgdEpsilon({ ...plan, steps: plan.steps * 20, delta: 1e-5 }).epsilon).toBeLessThanOrEqual(8);
  });

  it('--dp client: dp-fedavg, client-level σ, optional adaptive clipping; nonsense is a usage error', () => {
    const f = fields('--dp', 'client', '--dp-epsilon', '5', '--rounds', '20', '--dp-clip', '2', '--dp-clip-quantile', '0.5');
    expect(f).toMatchObject({ strategy: 'dp-fedavg', dp: { mode: 'central', epsilonBudget: 5, clip: 2, adaptiveClip: { targetQuantile: 0.5 } } });
    expect(clientLevelEpsilon({ rounds: 20, participationRate: 1, noiseMultiplier: f.dp!.noiseMultiplier, delta: 1e-5 })).toBeLessThanOrEqual(5);
    expect(parseRunConfig({ rounds: 20, ...f }).strategy).toBe('dp-fedavg');
    expect(() => fields('--dp', 'local', '--dp-clip-quantile', '0.5')).toThrow(/--dp-clip-quantile is for --dp client/);
    expect(() => fields('--dp', 'global')).toThrow(/local or client/);
    expect(() => fields('--dp', 'local', '--dp-delta', '0.5')).toThrow(/dp-delta/);
    expect(() => fields('--dp', 'local', '--dataset', 'idx')).toThrow(/give --dp-noise/);
    expect(fields('--dp', 'local', '--dp-noise', '1.3').dp?.noiseMultiplier).toBe(1.3);
    // A budget that not even one round fits in is refused before anything starts (as POST /runs would).
    expect(() => fields('--dp', 'client', '--dp-epsilon', '0.001', '--dp-noise', '0.5')).toThrow(/one DP-FedAvg round costs client-level ε/);
    expect(() => fields('--dp', 'local', '--dp-epsilon', '0.5', '--dp-noise', '0.6')).toThrow(/one round on a node holding 2666 records/);
  });
});
