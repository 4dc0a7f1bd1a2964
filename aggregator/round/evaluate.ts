import { buildModel, evaluate, setFlatWeights, type EvalResult } from '../../services/core/model.js';
import type { ImageSet } from '../../datasets/types.js';

export interface Evaluator {
  /** Accuracy and loss of these global weights on the held-out set. */
  evaluate(flat: Float32Array): EvalResult;
  dispose(): void;
}

/** One model instance, reused for every evaluation of the process (weights are swapped in). */
export function createEvaluator(heldOut: ImageSet): Evaluator {
  const model = buildModel(1);
  return {
    evaluate(flat) {
      setFlatWeights(model, flat);
      return evaluate(model, heldOut.images, heldOut.labels);
    },
    dispose: () => model.dispose(),
  };
}
