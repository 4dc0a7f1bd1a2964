/**
 * MaxPoolGrad for the wasm backend as one JS pass over the wasm heap. The stock C++
 * kernel costs ~10 ms per step on the CNN's first pool layer; matching the forward
 * output against each window in NHWC order is several times cheaper.
 */
import { backend_util, type KernelFunc, type MaxPoolGradAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Shape4 = [number, number, number, number];

/**
 * Per output pixel, sends each channel's dy to the first window tap holding the pooled
 * maximum (`output`), the cpu backend's tie rule. NHWC keeps channels contiguous, so the
 * taps' offsets are computed once per pixel and shared by all channels.
 */
function routeToArgMax(x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array, info: backend_util.Conv2DInfo): void {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { dilationHeight, dilationWidth, effectiveFilterHeight, effectiveFilterWidth } = info;
  const taps = new Int32Array(info.filterHeight * info.filterWidth);
  dx.fill(0);
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    const xBatch = b * inHeight * inWidth * c;
    for (let oh = 0; oh < outHeight; oh++) {
      const top = oh * strideHeight - info.padInfo.top;
      for (let ow = 0; ow < outWidth; ow++, o += c) {
        const left = ow * strideWidth - info.padInfo.left;
        let count = 0;
        for (let ih = top; ih < top + effectiveFilterHeight; ih += dilationHeight) {
          if (ih < 0 || ih >= inHeight) continue;
          for (let iw = left; iw < left + effectiveFilterWidth; iw += dilationWidth) {
            if (iw >= 0 && iw < inWidth) taps[count++] = xBatch + (ih * inWidth + iw) * c;
          }
        }
        for (let ch = 0; ch < c; ch++) {
          const max = y[o + ch]!;
          for (let t = 0; t < count; t++) {
            const at = taps[t]! + ch;
            if (x[at] === max) {
              dx[at]! += dy[o + ch]!;
              break;
            }
          }
        }
      }
    }
  }
}

export const maxPoolGrad: KernelFunc = ({ inputs, attrs, backend }) => {
  const { dy, input, output } = inputs as { dy: TensorInfo; input: TensorInfo; output: TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs;
  const wasm = backend as BackendWasm;
  const info = backend_util.computePool2DInfo(input.shape as Shape4, filterSize, strides, 1, pad, dimRoundingMode);
  // Allocate before taking heap views: an allocation may grow (and detach) the wasm memory.
  const dx = wasm.makeOutput(input.shape, 'float32');
  const view = (t: TensorInfo) => wasm.typedArrayFromHeap(t) as Float32Array;
  routeToArgMax(view(input), view(output), view(dy), view(dx), info);
  return dx;
};
