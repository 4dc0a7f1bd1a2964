/**
 * Training kernels edgefl registers for the wasm backend (which ships no
 * Conv2DBackpropFilter). Placeholder: replaced by the XNNPACK-backed implementation.
 */
export function registerWasmTrainingKernels(): void {}
