import { describe, expect, it } from 'vitest';
import { trainingFloats, trainingMiB } from '../services/trainer/batch-memory.js';
import { maxBatchForMemory, refuseBatchAboveMemory, TRAINING_MIB_PER_SAMPLE } from '../services/trainer/train-request.js';
import { REFERENCE_CNN, type ModelSpec } from '../services/core/model-spec.js';
import { DP_CNN, SCATTER_CNN, SCATTER_LINEAR } from '../services/core/model-zoo.js';
import { HttpError } from '../services/http/errors.js';

/** The reference CNN with twice the filters: more activations a sample than the model the factor was measured on. */
const WIDE: ModelSpec = {
  ...REFERENCE_CNN,
  layers: REFERENCE_CNN.layers.map((l) => (l.kind === 'conv2d' ? { ...l, filters: l.filters * 2 } : l)),
};

describe("a trainer's batch cap follows the run's model", () => {
  it("keeps the reference CNN's measured 1.1 MiB a sample, so its cap under 512 MiB stays 290", () => {
    expect(trainingMiB(REFERENCE_CNN).perSample).toBeCloseTo(TRAINING_MIB_PER_SAMPLE, 2);
    expect(maxBatchForMemory(512)).toBe(290);
    expect(maxBatchForMemory(512, REFERENCE_CNN)).toBe(290);
  });

  it('counts each layer: im2col and per-example kernels of convs, outputs of every layer', () => {
    // dp-cnn: input 784; conv1 14·14·16 out + 14·14·64 patches + 1,024 kernel; pool1 13·13·16;
    // conv2 5·5·32 out + 5·5·256 patches + 8,192 kernel; pool2 4·4·32; flatten 512; dense 32 and 10.
    expect(trainingFloats(DP_CNN)).toEqual({ perSample: 784 + 3136 + 12544 + 1024 + 2704 + 800 + 6400 + 8192 + 512 + 512 + 32 + 10, fixed: 0 });
    // A scattering layer's responses are a fixed 32-example slice; a sample keeps its 81·7·7 features.
    expect(trainingFloats(SCATTER_LINEAR).perSample).toBe(784 + 3969 + 3969 + 10);
    expect(trainingFloats(SCATTER_LINEAR).fixed).toBeGreaterThan(0);
  });

  it('lets a small model train the batches DP-SGD wants under 512 MiB, and a wider one fewer than the reference', () => {
    expect(maxBatchForMemory(512, DP_CNN)).toBeGreaterThanOrEqual(1024);
    expect(maxBatchForMemory(512, SCATTER_LINEAR)).toBeGreaterThanOrEqual(1024);
    expect(maxBatchForMemory(512, SCATTER_CNN)).toBeGreaterThanOrEqual(512);
    expect(maxBatchForMemory(512, WIDE)).toBeLessThan(200);
    // Below the trainer's own footprint plus the scattering slice: still 1, never 0 or negative.
    expect(maxBatchForMemory(200, SCATTER_CNN)).toBe(1);
  });

  it("refuses a batch above the run's model cap with a 400 that says why", () => {
    const cap = maxBatchForMemory(512, DP_CNN);
    expect(() => refuseBatchAboveMemory(cap, cap)).not.toThrow();
    let thrown: unknown;
    try {
      refuseBatchAboveMemory(cap + 1, cap);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(HttpError);
    expect(thrown).toMatchObject({ status: 400, code: 'invalid_field' });
    expect((thrown as Error).message).toMatch(new RegExp(`'batchSize' must be <= ${cap}.*memory limit`));
  });
});
