/**
 * MaxPoolGrad for the wasm backend as one JS pass over the wasm heap. The stock C++
 * kernel costs ~10 ms per step on the CNN's first pool layer; routing each dy to its
 * window's arg-max channel-vectorised in NHWC order is several times cheaper.
 */
import { backend_util, type KernelFunc, type MaxPoolGradAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Shape4 = [number, number, number, number];

/**
 * Per (batch, output pixel), scans the window for every channel at once (NHWC keeps
 * channels contiguous) and adds dy at the first maximum, the tie rule of the cpu backend.
 */
function routeToArgMax(x: Float32Array, dy: Float32Array, dx: Float32Array, info: backend_util.Conv2DInfo): void {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { dilationHeight, dilationWidth, effectiveFilterHeight, effectiveFilterWidth } = info;
  const best = new Float32Array(c);
  const bestAt = new Int32Array(c);
  dx.fill(0);
  for (let b = 0; b < batchSize; b++) {
    const xBatch = b * inHeight * inWidth * c;
    for (let oh = 0; oh < outHeight; oh++) {
      const top = oh * strideHeight - info.padInfo.top;
      for (let ow = 0; ow < outWidth; ow++) {
        const left = ow * strideWidth - info.padInfo.left;
        best.fill(-Infinity);
        bestAt.fill(-1);
        for (let ih = top; ih < top + effectiveFilterHeight; ih += dilationHeight) {
          if (ih < 0 || ih >= inHeight) continue;
          for (let iw = left; iw < left + effectiveFilterWidth; iw += dilationWidth) {
            if (iw < 0 || iw >= inWidth) continue;
            const at = xBatch + (ih * inWidth + iw) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = x[at + ch]!;
              if (v > best[ch]!) {
                best[ch] = v;
                bestAt[ch] = at + ch;
              }
            }
          }
        }
        const dyAt = ((b * outHeight + oh) * outWidth + ow) * c;
        for (let ch = 0; ch < c; ch++) if (bestAt[ch]! >= 0) dx[bestAt[ch]!]! += dy[dyAt + ch]!;
      }
    }
  }
}

export const maxPoolGrad: KernelFunc = ({ inputs, attrs, backend }) => {
  const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs;
  const wasm = backend as BackendWasm;
  const info = backend_util.computePool2DInfo(input.shape as Shape4, filterSize, strides, 1, pad, dimRoundingMode);
  // Allocate before taking heap views: an allocation may grow (and detach) the wasm memory.
  const dx = wasm.makeOutput(input.shape, 'float32');
  const view = (t: TensorInfo) => wasm.typedArrayFromHeap(t) as Float32Array;
  routeToArgMax(view(input), view(dy), view(dx), info);
  return dx;
};
