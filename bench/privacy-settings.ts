/**
 * The privacy bench's model and federation settings beyond plain FedAvg: which model spec a
 * run trains (--model), the local learning rate of each round (--lr-schedule), and the server
 * step on the averaged update (--server-lr, --server-momentum: FedAvgM, Hsu et al. 2019).
 * All of it acts on noised updates or on public settings, so none of it costs privacy.
 */
import { existsSync } from 'node:fs';
import { builtinModel, BUILTIN_MODELS } from '../services/core/model-zoo.js';
import { readLayersModelFile } from '../services/core/layers-model.js';
import type { ModelSpec } from '../services/core/model-spec.js';
import { BenchUsageError } from './lib/flags.js';

/** A built-in spec by name, else the spec of a Layers model.json (its weights are not used: the bench seeds fresh ones). */
export function resolveModelSpec(model: string): ModelSpec {
  const builtin = builtinModel(model);
  if (builtin) return builtin;
  if (!model.endsWith('.json') || !existsSync(model)) {
    throw new BenchUsageError(`--model must be one of ${Object.keys(BUILTIN_MODELS).join(', ')} or the path of a Layers model.json, got '${model}'`);
  }
  return readLayersModelFile(model).spec;
}

/** Round r's (1-based, of `rounds`) local learning rate: constant, or cosine from lr to lr/10. */
export function roundLearningRate(lr: number, schedule: 'constant' | 'cosine', r: number, rounds: number): number {
  if (schedule === 'constant' || rounds === 1) return lr;
  const t = (r - 1) / (rounds - 1);
  return lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * t)));
}

/** The server's momentum buffer over rounds. */
export interface ServerState {
  velocity: Float32Array;
}

export const serverState = (size: number): ServerState => ({ velocity: new Float32Array(size) });

/**
 * global + η·v with v ← β·v + (average − global): with η = 1 and β = 0, exactly FedAvg's
 * new global = average. Updates `state` in place; returns the new global weights.
 */
export function serverStep(global: Float32Array, average: Float32Array, state: ServerState, lr: number, momentum: number): Float32Array {
  const out = new Float32Array(global.length);
  const v = state.velocity;
  for (let j = 0; j < global.length; j++) {
    v[j] = momentum * v[j]! + (average[j]! - global[j]!);
    out[j] = global[j]! + lr * v[j]!;
  }
  return out;
}

/**
 * decay·average + (1 − decay)·latest (the latest alone at first or with decay 0): averaging the
 * global models of the last rounds averages their independent DP noise away, as post-processing
 * (De et al. 2022 average DP-SGD iterates the same way).
 */
export function movingAverage(average: Float32Array | undefined, latest: Float32Array, decay: number): Float32Array {
  if (!average || decay === 0) return latest;
  return average.map((a, j) => decay * a + (1 - decay) * latest[j]!);
}
