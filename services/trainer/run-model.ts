import type pg from 'pg';
import { HttpError } from '../http/errors.js';
import { buildModel, tensorSpecsOf, type TensorSpec } from '../core/model.js';
import { REFERENCE_CNN, inputSize, specKey, type ModelSpec } from '../core/model-spec.js';
import type { tfl } from '../core/tf.js';
import type { ImageSet } from '../../datasets/types.js';
import { runModelSpec } from '../store/run-model.js';

/** A node's training data as loaded for one input shape: the set, files skipped as unreadable, and where it came from. */
export interface NodeData {
  set: ImageSet;
  skipped: number;
  source: string;
}

export interface RunModel {
  spec: ModelSpec;
  model: tfl.LayersModel;
  tensors: TensorSpec[];
  data: NodeData;
}

/**
 * The trainer's side of "the model is the run's": the spec comes from the store by run id, the
 * layers are built once per distinct spec, and the node's data is loaded once per input shape
 * (an image folder resizes to it). Problems with the data are the node's round failing with a
 * 422 that names the path, never a crash.
 */
export class TrainerModels {
  private readonly specs = new Map<string, ModelSpec>();
  private readonly models = new Map<string, tfl.LayersModel>();
  private readonly data = new Map<string, NodeData>();

  constructor(
    private readonly deps: { pool: pg.Pool; model: tfl.LayersModel; shard: ImageSet; dataFor?: (spec: ModelSpec) => NodeData },
  ) {
    this.models.set(specKey(REFERENCE_CNN), deps.model);
  }

  async forRun(runId: string): Promise<RunModel> {
    let spec = this.specs.get(runId);
    if (!spec) {
      spec = await runModelSpec(this.deps.pool, runId);
      if (this.specs.size > 64) this.specs.clear(); // a handful of runs at a time; never unbounded
      this.specs.set(runId, spec);
    }
    const key = specKey(spec);
    let model = this.models.get(key);
    if (!model) {
      model = buildModel(1, spec);
      this.models.set(key, model);
    }
    return { spec, model, tensors: tensorSpecsOf(spec), data: this.checkedData(spec) };
  }

  private checkedData(spec: ModelSpec): NodeData {
    const shapeKey = spec.inputShape.join('x');
    let data = this.data.get(shapeKey);
    if (!data) {
      data = this.deps.dataFor ? this.deps.dataFor(spec) : { set: this.deps.shard, skipped: 0, source: 'the built-in partition' };
      this.data.set(shapeKey, data);
    }
    const { set, source } = data;
    if (set.count === 0) throw new HttpError(422, 'no_usable_samples', `${source} holds no usable samples for model '${spec.name}' (${data.skipped} file(s) skipped as unreadable)`);
    const perSample = set.images.length / set.count;
    if (perSample !== inputSize(spec)) {
      throw new HttpError(422, 'data_shape_mismatch', `${source} holds ${perSample} values per sample; model '${spec.name}' takes ${spec.inputShape.join('x')} = ${inputSize(spec)}`);
    }
    const bad = set.labels.findIndex((l) => l >= spec.classes);
    if (bad >= 0) throw new HttpError(422, 'label_out_of_range', `${source}: sample ${bad} has label ${set.labels[bad]}, outside model '${spec.name}''s classes 0..${spec.classes - 1}`);
    return data;
  }
}
