import type pg from 'pg';
import { buildModel, getFlatWeights, tensorSpecsOf } from '../services/core/model.js';
import { REFERENCE_CNN, inputSize, specKey, type ModelSpec } from '../services/core/model-spec.js';
import type { ImageSet } from '../datasets/types.js';
import { badRequest } from '../services/http/errors.js';
import { runModelSpec, saveRunModel, versionModelSpec } from '../services/store/run-model.js';
import { createEvaluator, type Evaluator } from './round/evaluate.js';
import { PolicyPromoter } from './promotion.js';
import type { RoundContext } from './round/types.js';
import type { RunConfig } from './run-config.js';

/** The deployment's own model (EDGEFL_MODEL / `up --model`): its spec and, when the file had them, its trained weights. */
export interface DeploymentModel {
  spec: ModelSpec;
  weights?: Float32Array;
  source: string;
}

/**
 * Each run's model on the aggregator: which spec a run trains, its initial weights, and one
 * round context per distinct spec (an evaluator of that shape on the held-out set, its weight
 * manifest, its promoter), so runs of different models can share one aggregator.
 */
export class RunModels {
  private readonly contexts = new Map<string, { ctx: RoundContext; evaluator: Evaluator }>();

  constructor(
    private readonly deps: { pool: pg.Pool; heldOut: ImageSet; deployment?: DeploymentModel },
  ) {}

  /** The spec a new run trains: its config's, else the deployment's, else the reference CNN. */
  specFor(config: RunConfig): ModelSpec {
    return config.model ?? this.deps.deployment?.spec ?? REFERENCE_CNN;
  }

  /** 400 when the held-out set cannot evaluate this model (other image size or more classes). */
  checkHeldOut(spec: ModelSpec): void {
    const h = this.deps.heldOut;
    const perSample = h.images.length / Math.max(1, h.count);
    if (perSample !== inputSize(spec)) {
      throw badRequest('model_data_mismatch', `the aggregator's held-out images have ${perSample} values each; model '${spec.name}' takes ${spec.inputShape.join('x')} = ${inputSize(spec)} (set EDGEFL_EVAL_DATA to matching data)`);
    }
    if (h.numClasses > spec.classes) throw badRequest('model_data_mismatch', `the held-out data has ${h.numClasses} classes; model '${spec.name}' predicts ${spec.classes}`);
  }

  /** Fresh initial weights: the model file's own when the run trains the deployment's model, else seeded ones. */
  initialWeights(spec: ModelSpec, seed: number): Float32Array {
    const d = this.deps.deployment;
    if (d?.weights && specKey(d.spec) === specKey(spec)) return d.weights;
    const model = buildModel(seed, spec);
    const flat = getFlatWeights(model);
    model.dispose();
    return flat;
  }

  async save(runId: string, spec: ModelSpec): Promise<void> {
    const d = this.deps.deployment;
    await saveRunModel(this.deps.pool, runId, spec, d && specKey(d.spec) === specKey(spec) ? d.source : spec === REFERENCE_CNN ? 'reference' : 'run config');
  }

  /** Whether a stored version's weights belong to this spec (init: latest/promoted must not cross models). */
  async versionFits(version: number, spec: ModelSpec): Promise<boolean> {
    return specKey(await versionModelSpec(this.deps.pool, version)) === specKey(spec);
  }

  /** The round context of a run: `base` with the run's evaluator, manifest and promoter. */
  async contextFor(runId: string, base: RoundContext): Promise<RoundContext> {
    return this.contextOf(await runModelSpec(this.deps.pool, runId), base).ctx;
  }

  evaluatorFor(spec: ModelSpec, base: RoundContext): Evaluator {
    return this.contextOf(spec, base).evaluator;
  }

  private contextOf(spec: ModelSpec, base: RoundContext): { ctx: RoundContext; evaluator: Evaluator } {
    const key = specKey(spec);
    let entry = this.contexts.get(key);
    if (!entry) {
      const evaluator = createEvaluator(this.deps.heldOut, spec);
      const tensors = tensorSpecsOf(spec);
      const promotion = new PolicyPromoter({ pool: this.deps.pool, validate: (flat) => evaluator.evaluate(flat), tensors });
      entry = { evaluator, ctx: { ...base, tensors, evaluate: (flat) => evaluator.evaluate(flat), test: (flat) => evaluator.test(flat), promotion } };
      this.contexts.set(key, entry);
    }
    return entry;
  }

  dispose(): void {
    for (const { evaluator } of this.contexts.values()) evaluator.dispose();
  }
}
