import { describe, expect, it } from 'vitest';
import { movingAverage, resolveModelSpec, roundLearningRate, serverState, serverStep } from '../bench/privacy-settings.js';
import { DP_CNN } from '../services/core/model-zoo.js';
import { REFERENCE_CNN } from '../services/core/model-spec.js';
import { weightSpecs } from '../services/core/forward.js';

const params = (spec: typeof DP_CNN) => weightSpecs(spec).reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);

describe('dp-cnn', () => {
  it('is the 26,010-parameter tanh CNN of the DP-SGD papers, 12x smaller than the reference CNN', () => {
    expect(params(DP_CNN)).toBe(26_010);
    expect(params(REFERENCE_CNN)).toBe(317_066);
    expect(DP_CNN.layers.some((l) => l.kind === 'dropout')).toBe(false);
  });

  it('the shipped model.json (for edgefl up --model) describes the same layers as the built-in spec', () => {
    const fromFile = resolveModelSpec('datasets/models/dp-cnn/model.json');
    expect(fromFile.layers).toEqual(DP_CNN.layers);
    expect(fromFile.inputShape).toEqual(DP_CNN.inputShape);
  });

  it('--model takes a built-in name or a model.json path and refuses anything else', () => {
    expect(resolveModelSpec('dp-cnn')).toBe(DP_CNN);
    expect(resolveModelSpec('reference')).toBe(REFERENCE_CNN);
    expect(() => resolveModelSpec('toString')).toThrow(/--model must be one of reference, dp-cnn/);
    expect(() => resolveModelSpec('no/such/model.json')).toThrow(/--model must be/);
  });
});

describe('bench federation settings', () => {
  it('cosine schedule: lr in round 1, lr/10 in the last, decreasing in between', () => {
    const lrs = Array.from({ length: 10 }, (_, r) => roundLearningRate(2, 'cosine', r + 1, 10));
    expect(lrs[0]).toBeCloseTo(2, 10);
    expect(lrs[9]).toBeCloseTo(0.2, 10);
    lrs.slice(1).forEach((lr, i) => expect(lr).toBeLessThan(lrs[i]!));
    expect(roundLearningRate(2, 'constant', 7, 10)).toBe(2);
  });

  it('server step: lr 1 without momentum is FedAvg (the average); momentum carries the last step on', () => {
    const global = Float32Array.from([0, 1]);
    const average = Float32Array.from([1, 3]);
    expect([...serverStep(global, average, serverState(2), 1, 0)]).toEqual([1, 3]);
    const state = serverState(2);
    const first = serverStep(global, average, state, 0.5, 0.9); // v = (1, 2)
    expect([...first]).toEqual([0.5, 2]);
    const second = serverStep(first, first, state, 0.5, 0.9); // no new delta: v = 0.9·(1, 2)
    expect(second[0]).toBeCloseTo(0.5 + 0.45, 6);
    expect(second[1]).toBeCloseTo(2 + 0.9, 6);
  });

  it('moving average of the global models: the latest at first, then decay·average + (1 − decay)·latest', () => {
    const first = movingAverage(undefined, Float32Array.from([2]), 0.75);
    expect([...first]).toEqual([2]);
    expect([...movingAverage(first, Float32Array.from([6]), 0.75)]).toEqual([3]);
    expect([...movingAverage(first, Float32Array.from([6]), 0)]).toEqual([6]);
  });
});
