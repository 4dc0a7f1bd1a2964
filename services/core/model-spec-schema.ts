import { z } from 'zod';
import { slideSize, windowOf, type ModelSpec } from './model-spec.js';
import { scatteringActivationFloats, scatteringOutputShape } from './scattering.js';

/** Floats one example's scattering responses may take (64 MiB): its full-resolution order-2 responses are the largest activation. */
const MAX_SCATTERING_FLOATS = 2 ** 24;

/**
 * A ModelSpec as it arrives from outside (a run config, the store): checked field by field so a
 * stored or posted spec can never build a model tfjs would reject mid-round. Bounds keep one
 * request from asking for a model that cannot fit in memory (a 4096x4096 input, 10^6 filters).
 */
const dim = (max: number) => z.number().int().min(1).max(max);
const name = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, { error: 'must be 1-128 letters, digits, _ . -' });
const activation = z.enum(['relu', 'softmax', 'linear', 'tanh', 'sigmoid']);

const layerSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('conv2d'), name, filters: dim(4096), kernelSize: dim(64), strides: dim(64).optional(), padding: z.enum(['valid', 'same']), activation }).strict(),
  z.object({ kind: z.literal('maxPooling2d'), name, poolSize: dim(64), strides: dim(64).optional() }).strict(),
  z.object({ kind: z.literal('dropout'), name, rate: z.number().min(0).max(0.99) }).strict(),
  z.object({ kind: z.literal('flatten'), name }).strict(),
  z.object({ kind: z.literal('dense'), name, units: dim(65_536), activation }).strict(),
  // J ≤ 4 and L ≤ 16: 1 + 64 + 16²·6 = 1,601 channels per input channel at most, computed at full resolution.
  z.object({ kind: z.literal('scattering'), name, J: dim(4), L: dim(16), groups: dim(4096).optional() }).strict(),
]);

/** The largest model a run may ask for: 100 MB of float32 weights, per node and per serving function. */
export const MAX_PARAMS = 25_000_000;

/**
 * Walks the layer stack's shapes: the parameter count, or why the stack cannot build or train
 * (a window larger than its input, a Dense before a Flatten, a conv after one).
 */
export function shapeIssue(spec: Pick<ModelSpec, 'inputShape' | 'layers'>): { params: number } | { error: string } {
  let shape: number[] = [...spec.inputShape];
  let params = 0;
  for (const [i, l] of spec.layers.entries()) {
    if (l.kind === 'scattering') {
      // First only: nothing trains through it, so DP-SGD can compute its features once per shard.
      if (i !== 0) return { error: `layer '${l.name}' (scattering) must be the first layer` };
      if (scatteringActivationFloats(shape, l) > MAX_SCATTERING_FLOATS) return { error: `layer '${l.name}' (scattering): J = ${l.J}, L = ${l.L} on a ${shape.join('x')} input needs more than 64 MiB of responses per example` };
      shape = scatteringOutputShape(shape, l);
      if (l.groups !== undefined && shape[2]! % l.groups !== 0) return { error: `layer '${l.name}' (scattering): ${shape[2]} channels do not split into ${l.groups} equal groups` };
    } else if (l.kind === 'conv2d' || l.kind === 'maxPooling2d') {
      if (shape.length !== 3) return { error: `layer '${l.name}' (${l.kind}) needs an image input, but follows a Flatten` };
      const win = windowOf(l);
      const k = win.size;
      const [h, w] = [slideSize(shape[0]!, win), slideSize(shape[1]!, win)];
      if (h < 1 || w < 1) return { error: `layer '${l.name}' (${l.kind}): a ${k}x${k} window does not fit its ${shape[0]}x${shape[1]} input` };
      if (l.kind === 'conv2d') params += k * k * shape[2]! * l.filters + l.filters;
      shape = [h, w, l.kind === 'conv2d' ? l.filters : shape[2]!];
    } else if (l.kind === 'flatten') shape = [shape.reduce((a, b) => a * b, 1)];
    else if (l.kind === 'dense') {
      if (shape.length !== 1) return { error: `layer '${l.name}' (dense) needs a Flatten before it` };
      params += shape[0]! * l.units + l.units;
      shape = [l.units];
    }
    if (params > MAX_PARAMS) return { error: `the model has more than ${MAX_PARAMS.toLocaleString('en-US')} parameters (at layer '${l.name}'); edge nodes train and serve it in memory` };
  }
  return { params };
}

export const modelSpecSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'must be 1-64 letters, digits, _ . -' }),
    inputShape: z.tuple([dim(1024), dim(1024), dim(4)]),
    classes: dim(1000),
    layers: z.array(layerSchema).min(1).max(256),
    image: z.object({ invert: z.enum(['auto', 'true', 'false']).optional(), preprocess: z.enum(['mnist', 'resize']).optional() }).strict().optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const names = new Set<string>();
    for (const l of spec.layers) {
      if (names.has(l.name)) ctx.addIssue({ code: 'custom', message: `layer name '${l.name}' is used twice; weight names derive from layer names` });
      names.add(l.name);
    }
    const walked = shapeIssue(spec);
    if ('error' in walked) ctx.addIssue({ code: 'custom', message: walked.error });
    const last = spec.layers[spec.layers.length - 1]!;
    if (last.kind !== 'dense' || last.activation !== 'softmax') {
      ctx.addIssue({ code: 'custom', message: `the last layer must be a Dense layer with softmax activation (training's loss takes class probabilities); '${last.name}' is ${last.kind}` });
    } else if (last.units !== spec.classes) {
      ctx.addIssue({ code: 'custom', message: `classes is ${spec.classes} but the last layer '${last.name}' has ${last.units} units` });
    }
  }) satisfies z.ZodType<ModelSpec>;

/** A spec from untrusted JSON, or the first problem as one line. */
export function parseModelSpec(value: unknown): { spec: ModelSpec } | { error: string } {
  const parsed = modelSpecSchema.safeParse(value);
  if (parsed.success) return { spec: parsed.data as ModelSpec };
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length ? `'${issue.path.map(String).join('.')}': ` : '';
  return { error: `${where}${issue.message}` };
}
