import { buildModel, evaluate, setFlatWeights, type EvalResult } from '../../services/core/model.js';
import type { ModelSpec } from '../../services/core/model-spec.js';
import type { ImageSet } from '../../datasets/types.js';
import { splitHeldOut } from '../promotion.js';
import { featureHead } from '../../services/core/feature-head.js';

export interface Evaluator {
  /** Accuracy and loss of these global weights on the validation half of the held-out set: the figure that decides. */
  evaluate(flat: Float32Array): EvalResult;
  /** The same on the test half: reported only, no decision looks at it. */
  test(flat: Float32Array): EvalResult;
  dispose(): void;
}

/** One model instance, reused for every evaluation of the process (weights are swapped in). */
export function createEvaluator(heldOut: ImageSet, spec?: ModelSpec): Evaluator {
  const model = buildModel(1, spec);
  const { validation, test } = splitHeldOut(heldOut);
  const on = (set: ImageSet) => (flat: Float32Array) => {
    setFlatWeights(model, flat);
    // A model that starts with fixed features (a scattering layer): the held-out halves' features
    // are computed once per process (cached by their pixel arrays) and each round evaluates the
    // layers after them, as training does; a round no longer recomputes 2,000 digits' features.
    const head = featureHead(model, set);
    return head ? evaluate(head.model, head.data.images, head.data.labels) : evaluate(model, set.images, set.labels);
  };
  return {
    evaluate: on(validation),
    test: on(test),
    dispose: () => model.dispose(),
  };
}
