import { createRequire } from 'node:module';
import { tf } from './tf.js';

// TensorFlow.js packages are CommonJS: require() compiles them once, where an ESM import would
// also scan each bundle for its export names and module syntax (tens of ms of a cold start).
const require = createRequire(import.meta.url);

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export const BACKENDS: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  name: BackendName;
  /** Why earlier choices were skipped, for the start-up log line. */
  skipped: string[];
  initMs: number;
}

async function tryTensorflow(): Promise<void> {
  // Optional dependency: absent wherever libtensorflow could not be downloaded at install.
  const moduleName = '@tensorflow/tfjs-node';
  await import(moduleName);
  if (!(await tf.setBackend('tensorflow'))) throw new Error('tfjs-node loaded but its backend did not initialise');
}

async function tryWasm(training: boolean): Promise<void> {
  require('@tensorflow/tfjs-backend-wasm');
  // Gradient kernels only: a serving function never loads them (inference uses none).
  if (training) (await import('./wasm/kernels.js')).registerWasmTrainingKernels();
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not initialise');
}

async function tryCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend did not initialise');
}

const loaders: Record<BackendName, (training: boolean) => Promise<void>> = { tensorflow: tryTensorflow, wasm: tryWasm, cpu: tryCpu };

let active: Promise<BackendInfo> | undefined;

/**
 * Picks the fastest backend that loads: tfjs-node, then wasm (with edgefl's training
 * kernels), then cpu. `forced` (EDGEFL_BACKEND) skips the search and fails loudly if
 * that backend cannot start, since a silent fallback would hide a broken deployment.
 * `training: false` (serving) skips edgefl's wasm gradient kernels; the first call decides.
 */
export function initBackend(forced?: BackendName, log: (msg: string) => void = () => {}, opts: { training?: boolean } = {}): Promise<BackendInfo> {
  active ??= (async () => {
    const started = performance.now();
    const order = forced ? [forced] : BACKENDS;
    const skipped: string[] = [];
    for (const name of order) {
      try {
        await loaders[name](opts.training !== false);
        await tf.ready();
        const info = { name, skipped, initMs: performance.now() - started };
        log(`tensorflow.js backend: ${name}${skipped.length ? ` (skipped ${skipped.join('; ')})` : ''}`);
        return info;
      } catch (e) {
        if (forced) throw new Error(`EDGEFL_BACKEND=${forced} could not start: ${(e as Error).message}`);
        skipped.push(`${name}: ${firstLine((e as Error).message)}`);
      }
    }
    throw new Error(`no TensorFlow.js backend could start: ${skipped.join('; ')}`);
  })();
  return active;
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.slice(0, 160);
}

export function parseBackendName(value: string | undefined): BackendName | undefined {
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if ((BACKENDS as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(`EDGEFL_BACKEND must be one of auto, ${BACKENDS.join(', ')}; got '${value}'`);
}
