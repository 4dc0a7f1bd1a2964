import { z } from 'zod';
import type { ModelSpec } from '../services/core/model-spec.js';
import { parseModelSpec } from '../services/core/model-spec-schema.js';
import { ModelFormatError, specFromTopology } from '../services/core/layers-model.js';
import { missingTrainingKernels } from '../services/core/kernel-check.js';
import { BUILTIN_MODELS, builtinModel } from '../services/core/model-zoo.js';

/**
 * The run config's `model`: null for the deployment's model (EDGEFL_MODEL / `up --model`, else
 * the reference CNN), a built-in model's name, a ModelSpec, or a Layers model.json's topology ({modelTopology} or the
 * topology itself). Whatever arrives is converted and checked here, so POST /runs refuses a
 * model edgefl cannot train (an unsupported layer, a kernel the backend lacks) with a 400.
 */
export function toRunModel(value: unknown): { spec: ModelSpec } | { error: string } {
  let spec: ModelSpec;
  const v = value as Record<string, unknown>;
  if (typeof value === 'string') {
    // A built-in model by name (model-zoo.ts): the scattering models, which no Layers topology describes.
    const builtin = builtinModel(value);
    if (!builtin) return { error: `'${value.slice(0, 64)}' is not a built-in model (${Object.keys(BUILTIN_MODELS).join(', ')}); give a model spec or a Layers topology` };
    spec = builtin;
  } else if (v && typeof v === 'object' && ('modelTopology' in v || 'class_name' in v)) {
    try {
      spec = specFromTopology(v.modelTopology ?? v, typeof v.name === 'string' ? v.name : 'model');
    } catch (e) {
      if (e instanceof ModelFormatError) return { error: e.message };
      throw e;
    }
  } else {
    const parsed = parseModelSpec(value);
    if ('error' in parsed) return parsed;
    spec = parsed.spec;
  }
  const missing = missingTrainingKernels(spec);
  if (missing.length) {
    return { error: `the active TensorFlow.js backend has no ${missing.map((m) => `'${m.kernel}' kernel (layer '${m.layer}')`).join(', ')}: this model cannot be trained here` };
  }
  return { spec };
}

export const modelRunFields = {
  model: z
    .unknown()
    .optional()
    .transform((value, ctx): ModelSpec | null => {
      if (value === null || value === undefined) return null;
      const out = toRunModel(value);
      if ('spec' in out) return out.spec;
      ctx.addIssue({ code: 'custom', message: out.error });
      return z.NEVER;
    }),
};
