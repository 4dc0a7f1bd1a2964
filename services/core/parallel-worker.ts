/**
 * One data-parallel training thread (see parallel-train.ts): its own tfjs-core engine and wasm
 * backend, a replica of the model's weights, the forward pass of the spec on core ops and its
 * gradients (gradients.ts; no tfjs-layers). Each step it takes its rows of the batch and writes
 * their gradient into its slot of a shared buffer; after a barrier it sums every slot (in slot
 * order) over its own slice of the weights, applies the optimiser to that slice (it holds only
 * that slice's optimiser state) and writes the new weights to a shared buffer; after a second
 * barrier it copies all of them into its variables. No thread repeats another's update work.
 */
import { readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { forward, weightSpecs } from './forward.js';
import { registerForwardGradients } from './gradients.js';
import { registerWasmTrainingKernels } from './wasm/kernels.js';
import type { ModelSpec } from './model-spec.js';
import type { OptimizerName } from './train.js';
import { shardOptimizer, sumSlots, type ShardOptimizer } from './shard-optimizer.js';
import { StepBarrier } from './step-barrier.js';

export interface ResetMessage {
  type: 'reset';
  spec: ModelSpec;
  flat: Float32Array;
  optimizer: OptimizerName;
  learningRate: number;
  proximalMu: number;
  /**
   * threads x params gradients. A slot is rewritten only after the second barrier of the step,
   * when every thread has finished summing it.
   */
  grads: SharedArrayBuffer;
  /** The weights (params floats, holding `flat` at the start): each thread writes its slice after the update. */
  weights: SharedArrayBuffer;
  barrier: SharedArrayBuffer;
  threads: number;
  index: number;
  /** [from, to) of the flat weight vector whose update this thread computes. */
  slice: [number, number];
}

export interface StepMessage {
  type: 'step';
  /** This thread's rows of the batch: pixels (NHWC) and labels; rows [offset, offset + n) of `total`. */
  pixels: Float32Array;
  labels: Int32Array;
  offset: number;
  total: number;
  /** The step's dropout seed; each dropout layer i draws from (seed + i·7919) mod 2³¹, as seedDropout does. */
  dropoutSeed: number;
}

/**
 * Milliseconds one step spent in each phase, for benchmarks: forward + backward, gradient
 * copy-out, barriers, sum + update, weight copy-in; and, where Linux reports it, how much of
 * the step the thread ran on a CPU and how long it was ready to run but waited for one (other
 * processes on the cores).
 */
export interface StepPhases {
  compute: number;
  copyOut: number;
  wait: number;
  update: number;
  copyIn: number;
  onCpu: number;
  queued: number;
}

export type WorkerRequest = ResetMessage | StepMessage;
export type WorkerReply = { type: 'ready' } | { type: 'stepped'; lossSum: number; correct: number; ms: StepPhases } | { type: 'error'; message: string };

tf.env().set('PROD', true);

interface Replica {
  spec: ModelSpec;
  vars: tf.Variable[];
  anchors: tf.Tensor[];
  mu: number;
  /** The state of the update of this thread's slice only. */
  optimizer: ShardOptimizer;
  /** One per thread. */
  grads: Float32Array[];
  weights: Float32Array;
  slice: [number, number];
  /** The summed gradient of this thread's slice. */
  sum: Float32Array;
  barrier: StepBarrier;
  index: number;
}

let replica: Replica | undefined;
let generation = 0;

let backendReady: Promise<void> | undefined;
/** Once per thread. Not tf.getBackend(): it starts the wasm backend's async set-up and answers 'wasm' before that is done. */
const initWasm = (): Promise<void> =>
  (backendReady ??= (async () => {
    registerWasmTrainingKernels();
    // tfjs-core's CommonJS build registers no gradients; these cover forward.ts without loading tfjs-layers.
    registerForwardGradients();
    if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not initialise in the training thread');
    await tf.ready();
  })());

async function reset(m: ResetMessage): Promise<void> {
  await initWasm();
  if (replica) tf.dispose([...replica.vars, ...replica.anchors]);
  generation++;
  const specs = weightSpecs(m.spec);
  const params = m.flat.length;
  let at = 0;
  const vars = specs.map((s, i) => {
    const size = s.shape.reduce((a, b) => a * b, 1);
    const v = tf.variable(tf.tensor(m.flat.subarray(at, at + size), s.shape, 'float32'), true, `g${generation}_${i}_${s.name}`);
    at += size;
    return v;
  });
  if (at !== params) throw new Error(`weight vector has ${params} values, the spec needs ${at}`);
  const [from, to] = m.slice;
  replica = {
    spec: m.spec,
    vars,
    anchors: m.proximalMu > 0 ? vars.map((v) => tf.keep(v.clone())) : [],
    mu: m.proximalMu,
    optimizer: shardOptimizer(m.optimizer, to - from, m.learningRate, tf.backend().epsilon()),
    grads: Array.from({ length: m.threads }, (_, t) => new Float32Array(m.grads, t * params * 4, params)),
    weights: new Float32Array(m.weights, 0, params),
    slice: m.slice,
    sum: new Float32Array(to - from),
    barrier: new StepBarrier(m.barrier, m.threads),
    index: m.index,
  };
}

/** tf.dropout's mask for rows [offset, offset + n) of the whole batch: the same numbers one thread would draw. */
function shardDropout(offset: number, seed: number) {
  return (x: tf.Tensor, layerIndex: number, rate: number): tf.Tensor => {
    const keep = 1 - rate;
    const layerSeed = (seed + layerIndex * 7919) % 2 ** 31;
    // The generator fills the batch's mask in order, so rows past this thread's are never needed.
    const u = tf.randomUniform([offset + x.shape[0]!, ...x.shape.slice(1)], 0, 1, 'float32', layerSeed);
    const rows = tf.slice(u, offset, x.shape[0]);
    return tf.mul(x, tf.div(tf.floor(tf.add(rows, keep)), keep));
  };
}

function step(m: StepMessage): { lossSum: number; correct: number; ms: StepPhases } {
  const r = replica!;
  const sched0 = schedStat();
  const t0 = performance.now();
  const n = m.labels.length;
  const mine = r.grads[r.index]!;
  let lossSum = 0;
  let correct = 0;
  let t1 = t0;
  const withProx = r.mu > 0 && r.index === 0;
  if (n > 0 || withProx) {
    const [h, w, c] = r.spec.inputShape;
    const out = tf.tidy(() => {
      const xs = tf.tensor4d(m.pixels, [n, h, w, c]);
      const ys = tf.oneHot(tf.tensor1d(m.labels, 'int32'), r.spec.classes);
      let correctT: tf.Tensor = tf.scalar(0, 'int32');
      let ceSumT: tf.Tensor = tf.scalar(0);
      let proxT: tf.Tensor = tf.scalar(0);
      const { grads } = tf.variableGrads(() => {
        const probs = forward(r.spec, r.vars, xs, shardDropout(m.offset, m.dropoutSeed));
        correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), tf.argMax(ys, 1)), 'int32')));
        ceSumT = tf.keep(tf.neg(tf.sum(tf.mul(ys, tf.log(tf.clipByValue(probs, 1e-7, 1))))));
        // This thread's share of the batch mean; FedProx's term is added once, by thread 0.
        const share = tf.div(ceSumT, m.total) as tf.Scalar;
        if (!withProx) return share;
        const squared = r.vars.reduce<tf.Scalar>((acc, v, i) => tf.add(acc, tf.sum(tf.square(tf.sub(v, r.anchors[i]!)))) as tf.Scalar, tf.scalar(0));
        proxT = tf.keep(tf.mul(r.mu / 2, squared));
        return tf.add(share, proxT) as tf.Scalar;
      }, r.vars);
      return { grads: r.vars.map((v) => tf.keep(grads[v.name]!)), correctT, ceSumT, proxT };
    });
    t1 = performance.now();
    copyOut(out.grads, mine);
    // Reported like the single-threaded loop's loss·n, FedProx's term included.
    lossSum = out.ceSumT.dataSync()[0]! + out.proxT.dataSync()[0]! * m.total;
    correct = out.correctT.dataSync()[0]!;
    tf.dispose([...out.grads, out.correctT, out.ceSumT, out.proxT]);
  } else {
    mine.fill(0);
  }
  const t2 = performance.now();
  r.barrier.arriveAndWait();
  const t3 = performance.now();
  const [from, to] = r.slice;
  sumSlots(r.grads, from, r.sum);
  r.optimizer.apply(r.sum, r.weights.subarray(from, to));
  const t4 = performance.now();
  r.barrier.arriveAndWait();
  const t5 = performance.now();
  copyIn(r.vars, r.weights);
  const t6 = performance.now();
  const sched = schedStat();
  const [onCpu, queued] = sched0 && sched ? [sched[0] - sched0[0], sched[1] - sched0[1]] : [NaN, NaN];
  return { lossSum, correct, ms: { compute: t1 - t0, copyOut: t2 - t1, wait: t3 - t2 + (t5 - t4), update: t4 - t3, copyIn: t6 - t5, onCpu, queued } };
}

let schedStatReadable = true;
/** This thread's time on a CPU and waiting for one, in ms (Linux /proc/thread-self/schedstat), or undefined elsewhere. */
function schedStat(): [number, number] | undefined {
  if (!schedStatReadable) return undefined;
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    return [run! / 1e6, wait! / 1e6];
  } catch {
    schedStatReadable = false;
    return undefined;
  }
}

/** The gradients, in weight order, straight from the wasm heap into this thread's slot. */
function copyOut(grads: tf.Tensor[], slot: Float32Array): void {
  const backend = tf.backend() as BackendWasm;
  let at = 0;
  for (const g of grads) {
    slot.set(backend.typedArrayFromHeap(g) as Float32Array, at);
    at += g.size;
  }
}

/** Every variable takes its values from the shared weights. */
function copyIn(vars: tf.Variable[], weights: Float32Array): void {
  let at = 0;
  for (const v of vars) {
    const next = tf.tensor(weights.subarray(at, at + v.size), v.shape, 'float32');
    v.assign(next);
    next.dispose();
    at += v.size;
  }
}

parentPort!.on('message', (m: WorkerRequest) => {
  const reply = (r: WorkerReply) => parentPort!.postMessage(r);
  const run = async (): Promise<void> => {
    if (m.type === 'reset') {
      await reset(m);
      reply({ type: 'ready' });
    } else {
      reply({ type: 'stepped', ...step(m) });
    }
  };
  run().catch((e: unknown) => reply({ type: 'error', message: (e as Error).stack ?? String(e) }));
});
