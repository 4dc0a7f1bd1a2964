import { tf } from './tf.js';
import type { ModelSpec, LayerSpec, Activation } from './model-spec.js';

/**
 * The TensorFlow.js kernels one training step of a layer runs (forward and gradient). A
 * backend without one of them would fail mid-round, so a run asking for such a model is
 * refused before it starts, naming the kernel.
 */
const ACTIVATION_KERNELS: Record<Activation, string[]> = { relu: ['Relu', 'Step'], softmax: ['Softmax'], linear: [], tanh: ['Tanh'], sigmoid: ['Sigmoid'] };

function kernelsOf(layer: LayerSpec): string[] {
  switch (layer.kind) {
    case 'conv2d':
      return ['Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', ...ACTIVATION_KERNELS[layer.activation]];
    case 'dense':
      return ['BatchMatMul', ...ACTIVATION_KERNELS[layer.activation]];
    case 'maxPooling2d':
      return ['MaxPool', 'MaxPoolGrad'];
    case 'dropout':
    case 'flatten':
      return ['Reshape'];
    case 'scattering':
      return ['DepthwiseConv2dNative', 'Sqrt', 'Square', 'Concat', 'Reshape'];
  }
}

/** Kernels the model needs that `backend` (default: the active one) has not registered, with the layer needing each. */
export function missingTrainingKernels(spec: ModelSpec, backend = tf.getBackend()): { kernel: string; layer: string }[] {
  const missing: { kernel: string; layer: string }[] = [];
  for (const layer of spec.layers) {
    for (const kernel of kernelsOf(layer)) {
      if (!tf.getKernel(kernel, backend) && !missing.some((m) => m.kernel === kernel)) missing.push({ kernel, layer: layer.name });
    }
  }
  return missing;
}
