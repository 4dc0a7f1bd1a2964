/**
 * How much memory one training sample takes, from the model's own layers: the trainer's batch
 * cap follows the run's model instead of the reference CNN's measured 1.1 MiB a sample (which
 * refused a 26k-parameter model's batches above 290 under 512 MiB).
 *
 * Per sample, a step holds the input, every layer's output, each conv's im2col patches and
 * (under DP-SGD) its per-example kernel gradient. Those floats are scaled by one factor fitted
 * to the reference CNN's measurement (wasm backend: batch 256 +248 MiB RSS, batch 1024 +1072
 * MiB): its 152,698 floats a sample are 0.58 MiB, measured 1.07, so ×1.9 for the backward
 * pass's gradients of each activation and the wasm heap's slack. A scattering layer computes its
 * responses 32 examples at a time (scattering-op.ts): a fixed cost, and its output per sample.
 */
import { REFERENCE_CNN, slideSize, windowOf, type ModelSpec } from '../core/model-spec.js';
import { scatteringActivationFloats, scatteringOutputShape } from '../core/scattering.js';

const BYTES_PER_FLOAT = 4;
/** What the reference CNN's measured 1.1 MiB a sample is of its counted floats (1.1 MiB / (152,698 × 4 B)). */
const OVERHEAD = 1.89;
/** Examples a scattering layer computes at once. */
const SCATTERING_SLICE = 32;

/** Floats a training step holds per sample of the batch, and floats it holds whatever the batch (scattering's slices). */
export function trainingFloats(spec: Pick<ModelSpec, 'inputShape' | 'layers'>): { perSample: number; fixed: number } {
  let shape: number[] = [...spec.inputShape];
  let perSample = shape.reduce((a, b) => a * b, 1);
  let fixed = 0;
  for (const l of spec.layers) {
    if (l.kind === 'conv2d' || l.kind === 'maxPooling2d') {
      const win = windowOf(l);
      const k = win.size;
      const next = [slideSize(shape[0]!, win), slideSize(shape[1]!, win), l.kind === 'conv2d' ? l.filters : shape[2]!];
      if (l.kind === 'conv2d') perSample += next[0]! * next[1]! * k * k * shape[2]! + k * k * shape[2]! * l.filters;
      shape = next;
    } else if (l.kind === 'scattering') {
      fixed += SCATTERING_SLICE * scatteringActivationFloats(shape, l);
      shape = scatteringOutputShape(shape, l);
    } else if (l.kind === 'flatten') shape = [shape.reduce((a, b) => a * b, 1)];
    else if (l.kind === 'dense') shape = [l.units];
    perSample += shape.reduce((a, b) => a * b, 1);
  }
  return { perSample, fixed };
}

/** MiB of one training sample of this model, and MiB its step holds whatever the batch. */
export function trainingMiB(spec: Pick<ModelSpec, 'inputShape' | 'layers'> = REFERENCE_CNN): { perSample: number; fixed: number } {
  const f = trainingFloats(spec);
  const mib = (floats: number) => (floats * BYTES_PER_FLOAT * OVERHEAD) / 2 ** 20;
  return { perSample: mib(f.perSample), fixed: mib(f.fixed) };
}
