/**
 * The scattering layer for tfjs-layers models (what model.ts builds and DP-SGD reads back):
 * a layer with no weights whose call is scattering-op.ts's scatter, the same function serving's
 * forward pass runs. The class extends tfjs-layers' Layer, which loads lazily (tf.ts), so it is
 * defined on first use.
 */
import { tfl, type tf } from './tf.js';
import type { LayerSpec } from './model-spec.js';
import { scatteringOutputShape } from './scattering.js';
import { scatter, type ScatteringLayerParams } from './scattering-op.js';

export type ScatteringLayerSpec = Extract<LayerSpec, { kind: 'scattering' }>;

/** The class name DP-SGD's opsOf recognises. */
export const SCATTERING_CLASS = 'EdgeflScattering';

type LayerArgs = { name: string; inputShape?: number[] };
type ScatteringLayerInstance = InstanceType<typeof tfl.layers.Layer> & { readonly params: ScatteringLayerParams };
let ScatteringLayer: (new (params: ScatteringLayerParams, args: LayerArgs) => ScatteringLayerInstance) | undefined;

function defineClass() {
  return class extends tfl.layers.Layer {
    static readonly className = SCATTERING_CLASS;
    readonly params: ScatteringLayerParams;
    constructor(params: ScatteringLayerParams, args: LayerArgs) {
      super({ ...args, trainable: false });
      this.params = params;
    }
    override computeOutputShape(inputShape: (number | null)[]): (number | null)[] {
      return [inputShape[0]!, ...scatteringOutputShape(inputShape.slice(1) as number[], this.params)];
    }
    override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return scatter(x as tf.Tensor4D, this.params);
    }
    override getClassName(): string {
      return SCATTERING_CLASS;
    }
    override getConfig() {
      return { ...super.getConfig(), J: this.params.J, L: this.params.L, groups: this.params.groups ?? null };
    }
  };
}

/** A tfjs-layers scattering layer for one spec layer (the model's first, so it carries the input shape). */
export function scatteringLayer(layer: ScatteringLayerSpec, inputShape?: number[]): ScatteringLayerInstance {
  ScatteringLayer ??= defineClass();
  const { J, L, groups } = layer;
  return new ScatteringLayer(groups === undefined ? { J, L } : { J, L, groups }, { name: layer.name, ...(inputShape ? { inputShape } : {}) });
}

/** The settings of a built scattering layer, or undefined for any other layer. */
export function scatteringParamsOf(layer: { getClassName(): string }): ScatteringLayerParams | undefined {
  return layer.getClassName() === SCATTERING_CLASS ? (layer as ScatteringLayerInstance).params : undefined;
}
