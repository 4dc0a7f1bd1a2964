/**
 * Thin wrappers that call the wasm backend's own kernels directly from inside another
 * wasm kernel. Going through `engine.runKernel` from a kernelFunc would register the
 * intermediates as engine tensors (and on the gradient tape); calling the kernel
 * functions keeps them plain TensorInfos that the kernel itself must free.
 */
import { getKernel, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type Pair = [number, number];

function runWasm(backend: BackendWasm, name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo {
  const kernel = getKernel(name, 'wasm');
  if (!kernel) throw new Error(`wasm backend has no ${name} kernel`);
  return kernel.kernelFunc({ inputs, attrs, backend }) as TensorInfo;
}

/**
 * Collects the intermediates one kernel invocation allocates so they can all be freed
 * in a `finally`, whatever path (or exception) the kernel takes.
 */
export class Scratch {
  private readonly owned: TensorInfo[] = [];

  constructor(readonly backend: BackendWasm) {}

  /** Takes ownership of a buffer some other kernel call allocated. */
  track(t: TensorInfo): TensorInfo {
    this.owned.push(t);
    return t;
  }

  /**
   * Frees every intermediate but one reference to the buffer the kernel returns. Kernels
   * such as Transpose of size-1 dims hand back the same buffer with its refcount raised,
   * so the result's buffer can be owned more than once and only one reference may stay.
   */
  release(result?: TensorInfo): void {
    let kept = result === undefined;
    for (const t of this.owned) {
      if (!kept && t.dataId === result!.dataId) kept = true;
      else this.backend.disposeData(t.dataId);
    }
    this.owned.length = 0;
  }

  /** Uninitialised float32 buffer for kernels that fill the heap themselves. */
  alloc(shape: number[]): TensorInfo {
    return this.track(this.backend.makeOutput(shape, 'float32'));
  }

  matMul(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo {
    return this.track(runWasm(this.backend, 'BatchMatMul', { a, b }, { transposeA, transposeB }));
  }

  transpose(x: TensorInfo, perm: number[]): TensorInfo {
    if (perm.every((p, i) => p === i)) return x;
    return this.track(runWasm(this.backend, 'Transpose', { x }, { perm }));
  }

  reverse(x: TensorInfo, dims: number[]): TensorInfo {
    return this.track(runWasm(this.backend, 'Reverse', { x }, { dims }));
  }

  slice(x: TensorInfo, begin: number[], size: number[]): TensorInfo {
    if (size.every((s, i) => s === x.shape[i] && begin[i] === 0)) return x;
    return this.track(runWasm(this.backend, 'Slice', { x }, { begin, size }));
  }

  pad(x: TensorInfo, paddings: Pair[]): TensorInfo {
    if (paddings.every(([a, b]) => a === 0 && b === 0)) return x;
    return this.track(runWasm(this.backend, 'PadV2', { x }, { paddings, constantValue: 0 }));
  }

  /** NHWC conv with explicit, non-negative padding; strides and dilations may both exceed 1 (XNNPACK allows it). */
  conv2d(x: TensorInfo, filter: TensorInfo, strides: Pair, dilations: Pair, padH: Pair, padW: Pair): TensorInfo {
    const pad = [[0, 0], padH, padW, [0, 0]];
    return this.track(runWasm(this.backend, 'Conv2D', { x, filter }, { strides, dilations, pad, dataFormat: 'NHWC' }));
  }
}

/** Same buffer, new shape: a row-major reinterpretation needs no copy and no refcount. */
export function view(x: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: x.dataId, dtype: x.dtype, shape };
}
