import { describe, expect, it } from 'vitest';
import { dpProblems, parseDpConfig } from '../services/core/privacy/config.js';

describe('dp run config', () => {
  it('fills defaults and rejects unknown or impossible fields with dp.* messages', () => {
    expect(parseDpConfig(undefined)).toBeUndefined();
    expect(parseDpConfig({ epsilonBudget: 8, noiseMultiplier: 1.1 })).toEqual({ mode: 'local', epsilonBudget: 8, delta: 1e-5, noiseMultiplier: 1.1, clip: 1 });
    expect(() => parseDpConfig({ epsilonBudget: 8, noiseMultiplier: 0 })).toThrow(/dp\.noiseMultiplier/);
    expect(() => parseDpConfig({ epsilonBudget: -1, noiseMultiplier: 1 })).toThrow(/dp\.epsilonBudget/);
    expect(() => parseDpConfig({ epsilonBudget: 8, noiseMultiplier: 1, delta: 0.1 })).toThrow(/dp\.delta/);
    expect(() => parseDpConfig({ epsilonBudget: 8, noiseMultiplier: 1, sigma: 2 })).toThrow(/dp/);
    expect(() => parseDpConfig('yes')).toThrow(/dp/);
  });

  it('flags a budget that not even one round fits in, and a δ of 1/N or more', () => {
    const shape = { epochs: 1, batchSize: 256, shardSizes: [2700, 2500], participationRate: 1 };
    expect(dpProblems(parseDpConfig({ epsilonBudget: 8, noiseMultiplier: 1.1 })!, shape)).toEqual([]);
    const tight = dpProblems(parseDpConfig({ epsilonBudget: 0.01, noiseMultiplier: 0.5 })!, shape);
    expect(tight).toHaveLength(2);
    expect(tight[0]).toMatch(/one round on a node holding 2700 records costs ε = .*above dp.epsilonBudget 0.01/);
    expect(dpProblems(parseDpConfig({ epsilonBudget: 8, noiseMultiplier: 1.1, delta: 0.005 })!, { ...shape, shardSizes: [300] })[0]).toMatch(/not below 1\/N/);
    // Central: one round with every client is the plain Gaussian.
    expect(dpProblems(parseDpConfig({ mode: 'central', epsilonBudget: 1, noiseMultiplier: 0.3 })!, shape)[0]).toMatch(/client-level ε/);
    expect(dpProblems(parseDpConfig({ mode: 'central', epsilonBudget: 10, noiseMultiplier: 2 })!, shape)).toEqual([]);
  });
});
