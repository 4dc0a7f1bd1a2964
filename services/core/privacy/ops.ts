/**
 * The layer stack of a Sequential model as plain ops, the form DP-SGD's per-example
 * gradients (per-example.ts) replay with probes. Anything whose per-example gradient is not
 * implemented is refused here, before a step runs.
 */
import type { tf, tfl } from '../tf.js';
import { inputShapeOf } from '../model.js';
import { REFERENCE_CNN } from '../model-spec.js';
import { scatteringParamsOf } from '../scattering-layer.js';
import type { ScatteringLayerParams } from '../scattering-op.js';

export type Activation = 'relu' | 'softmax' | 'linear' | 'tanh' | 'sigmoid';
const ACTIVATIONS: readonly string[] = ['relu', 'softmax', 'linear', 'tanh', 'sigmoid'];

/** The model as a list of plain ops, so the forward pass can be replayed with probes. */
export type Op =
  | { kind: 'conv'; kernel: tf.Variable; bias: tf.Variable; kh: number; kw: number; strides: [number, number]; padding: 'valid' | 'same'; activation: Activation }
  | { kind: 'dense'; kernel: tf.Variable; bias: tf.Variable; activation: Activation }
  | { kind: 'pool'; size: [number, number]; strides: [number, number] }
  | { kind: 'dropout'; rate: number }
  | { kind: 'flatten' }
  /** Fixed features with no weights (the first layer only): computed before the traced pass, see fixed-features.ts. */
  | { kind: 'scatter'; params: ScatteringLayerParams };

function pair(v: unknown): [number, number] {
  return Array.isArray(v) ? [v[0] as number, v[1] as number] : [v as number, v as number];
}

function activationOf(cfg: Record<string, unknown>): Activation {
  const a = (cfg.activation as string | undefined) ?? 'linear';
  if (!ACTIVATIONS.includes(a)) throw new Error(`DP-SGD: unsupported activation ${a}`);
  return a as Activation;
}

/** Each op list's input shape [H, W, C], kept beside the list so Op stays a plain layer description. */
const inputShapes = new WeakMap<readonly Op[], readonly [number, number, number]>();
export const inputShapeFor = (ops: readonly Op[]) => inputShapes.get(ops) ?? REFERENCE_CNN.inputShape;
/** The same ops (a new list) taking inputs of `shape`: the layers after a fixed feature layer. */
export function withInputShape(ops: readonly Op[], shape: readonly [number, number, number]): Op[] {
  const out = [...ops];
  inputShapes.set(out, shape);
  return out;
}
/** Classes: the width of the last dense layer. */
export const classesFor = (ops: readonly Op[]) => [...ops].reverse().find((o) => o.kind === 'dense')!.kernel.shape[1]!;

/** Reads the layer stack; throws for anything whose per-example gradient is not implemented. */
export function opsOf(model: tfl.LayersModel): Op[] {
  const ops = opsOfLayers(model);
  inputShapes.set(ops, inputShapeOf(model));
  return ops;
}

function opsOfLayers(model: tfl.LayersModel): Op[] {
  return model.layers.map((layer): Op => {
    const cfg = layer.getConfig();
    const cls = layer.getClassName();
    const vars = () => layer.trainableWeights.map((w) => w.read() as tf.Variable);
    if (cls === 'Conv2D') {
      const [kernel, bias] = vars();
      const stride = pair(cfg.strides);
      const dilation = pair(cfg.dilationRate ?? 1);
      const padding = cfg.padding;
      if ((padding !== 'valid' && padding !== 'same') || dilation.some((d) => d !== 1) || !bias) {
        throw new Error(`DP-SGD: conv layer ${layer.name} must be valid- or same-padded, undilated, with bias`);
      }
      const [kh, kw] = pair(cfg.kernelSize);
      return { kind: 'conv', kernel: kernel!, bias, kh, kw, strides: stride, padding, activation: activationOf(cfg) };
    }
    if (cls === 'Dense') {
      const [kernel, bias] = vars();
      if (!bias) throw new Error(`DP-SGD: dense layer ${layer.name} needs a bias`);
      return { kind: 'dense', kernel: kernel!, bias, activation: activationOf(cfg) };
    }
    if (cls === 'MaxPooling2D') return { kind: 'pool', size: pair(cfg.poolSize), strides: pair(cfg.strides ?? cfg.poolSize) };
    if (cls === 'Dropout') return { kind: 'dropout', rate: cfg.rate as number };
    if (cls === 'Flatten') return { kind: 'flatten' };
    const scattering = scatteringParamsOf(layer);
    if (scattering) return { kind: 'scatter', params: scattering };
    throw new Error(`DP-SGD: unsupported layer ${cls}`);
  });
}
