/**
 * One data-parallel training thread (see parallel-train.ts): its own tfjs-core engine and wasm
 * backend, a replica of the model's weights and optimiser, the forward pass of the spec on core
 * ops (no tfjs-layers). Each step it takes its rows of the batch, writes their gradient into its
 * slot of a shared buffer, waits at a barrier for the other threads, sums all slots (in slot
 * order, so every replica computes the same sum) and applies it: the replicas never diverge and
 * no weights travel between steps.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
// Only for its side effect: its bundle registers tfjs-core's gradient functions (core's CommonJS build does not).
import '@tensorflow/tfjs-layers';
import { forward, weightSpecs } from './forward.js';
import { registerWasmTrainingKernels } from './wasm/kernels.js';
import type { ModelSpec } from './model-spec.js';
import type { OptimizerName } from './train.js';

export interface ResetMessage {
  type: 'reset';
  spec: ModelSpec;
  flat: Float32Array;
  optimizer: OptimizerName;
  learningRate: number;
  proximalMu: number;
  /** 2 x threads x params gradients: steps alternate halves, so a slot is never rewritten while a slower thread still sums it. */
  grads: SharedArrayBuffer;
  barrier: SharedArrayBuffer;
  threads: number;
  index: number;
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

export type WorkerRequest = ResetMessage | StepMessage | { type: 'weights' };
export type WorkerReply = { type: 'ready' } | { type: 'stepped'; lossSum: number; correct: number } | { type: 'weights'; flat: Float32Array } | { type: 'error'; message: string };

tf.env().set('PROD', true);

interface Replica {
  spec: ModelSpec;
  vars: tf.Variable[];
  anchors: tf.Tensor[];
  mu: number;
  optimizer: tf.Optimizer;
  /** [parity][thread] */
  grads: Float32Array[][];
  barrier: Int32Array;
  threads: number;
  index: number;
  steps: number;
  params: number;
}

let replica: Replica | undefined;
let generation = 0;

let backendReady: Promise<void> | undefined;
/** Once per thread. Not tf.getBackend(): it starts the wasm backend's async set-up and answers 'wasm' before that is done. */
const initWasm = (): Promise<void> =>
  (backendReady ??= (async () => {
    registerWasmTrainingKernels();
    if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not initialise in the training thread');
    await tf.ready();
  })());

async function reset(m: ResetMessage): Promise<void> {
  await initWasm();
  if (replica) {
    tf.dispose([...replica.vars, ...replica.anchors]);
    replica.optimizer.dispose();
  }
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
  replica = {
    spec: m.spec,
    vars,
    anchors: m.proximalMu > 0 ? vars.map((v) => tf.keep(v.clone())) : [],
    mu: m.proximalMu,
    optimizer: m.optimizer === 'sgd' ? tf.train.momentum(m.learningRate, 0.9) : tf.train.adam(m.learningRate),
    grads: [0, 1].map((half) => Array.from({ length: m.threads }, (_, t) => new Float32Array(m.grads, (half * m.threads + t) * params * 4, params))),
    barrier: new Int32Array(m.barrier),
    threads: m.threads,
    index: m.index,
    steps: 0,
    params,
  };
}

/** tf.dropout's mask for rows [offset, offset + n) of the whole batch: the same numbers one thread would draw. */
function shardDropout(offset: number, total: number, seed: number) {
  return (x: tf.Tensor, layerIndex: number, rate: number): tf.Tensor => {
    const keep = 1 - rate;
    const layerSeed = (seed + layerIndex * 7919) % 2 ** 31;
    const u = tf.randomUniform([total, ...x.shape.slice(1)], 0, 1, 'float32', layerSeed);
    const rows = tf.slice(u, offset, x.shape[0]);
    return tf.mul(x, tf.div(tf.floor(tf.add(rows, keep)), keep));
  };
}

function step(m: StepMessage): { lossSum: number; correct: number } {
  const r = replica!;
  const n = m.labels.length;
  const slots = r.grads[r.steps % 2]!;
  const mine = slots[r.index]!;
  let lossSum = 0;
  let correct = 0;
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
        const probs = forward(r.spec, r.vars, xs, shardDropout(m.offset, m.total, m.dropoutSeed));
        correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), tf.argMax(ys, 1)), 'int32')));
        ceSumT = tf.keep(tf.neg(tf.sum(tf.mul(ys, tf.log(tf.clipByValue(probs, 1e-7, 1))))));
        // This thread's share of the batch mean; FedProx's term is added once, by thread 0.
        const share = tf.div(ceSumT, m.total) as tf.Scalar;
        if (!withProx) return share;
        const squared = r.vars.reduce<tf.Scalar>((acc, v, i) => tf.add(acc, tf.sum(tf.square(tf.sub(v, r.anchors[i]!)))) as tf.Scalar, tf.scalar(0));
        proxT = tf.keep(tf.mul(r.mu / 2, squared));
        return tf.add(share, proxT) as tf.Scalar;
      }, r.vars);
      return { flat: tf.concat(r.vars.map((v) => tf.reshape(grads[v.name]!, [-1]))), correctT, ceSumT, proxT };
    });
    mine.set(out.flat.dataSync() as Float32Array);
    // Reported like the single-threaded loop's loss·n, FedProx's term included.
    lossSum = out.ceSumT.dataSync()[0]! + out.proxT.dataSync()[0]! * m.total;
    correct = out.correctT.dataSync()[0]!;
    tf.dispose([out.flat, out.correctT, out.ceSumT, out.proxT]);
  } else {
    mine.fill(0);
  }
  arriveAndWait(r);
  applySum(r, slots);
  return { lossSum, correct };
}

/** Every thread arrives once per step; the counter only grows, so step k's barrier waits for threads·k. */
function arriveAndWait(r: Replica): void {
  r.steps++;
  const target = r.threads * r.steps;
  Atomics.add(r.barrier, 0, 1);
  Atomics.notify(r.barrier, 0);
  for (;;) {
    const seen = Atomics.load(r.barrier, 0);
    if (seen >= target) return;
    if (Atomics.wait(r.barrier, 0, seen, 120_000) === 'timed-out') throw new Error('a training thread did not reach the step barrier within 120 s');
  }
}

function applySum(r: Replica, slots: Float32Array[]): void {
  const sum = new Float32Array(r.params);
  for (const g of slots) for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + g[i]!;
  tf.tidy(() => {
    let at = 0;
    const named = r.vars.map((v) => {
      const t = tf.tensor(sum.subarray(at, at + v.size), v.shape, 'float32');
      at += v.size;
      return { name: v.name, tensor: t };
    });
    r.optimizer.applyGradients(named);
  });
}

function weights(): Float32Array {
  const r = replica!;
  const flat = new Float32Array(r.params);
  let at = 0;
  for (const v of r.vars) {
    const data = v.dataSync() as Float32Array;
    flat.set(data, at);
    at += data.length;
  }
  return flat;
}

parentPort!.on('message', (m: WorkerRequest) => {
  const reply = (r: WorkerReply, transfer: ArrayBuffer[] = []) => parentPort!.postMessage(r, transfer);
  const run = async (): Promise<void> => {
    if (m.type === 'reset') {
      await reset(m);
      reply({ type: 'ready' });
    } else if (m.type === 'step') {
      reply({ type: 'stepped', ...step(m) });
    } else {
      const flat = weights();
      reply({ type: 'weights', flat }, [flat.buffer as ArrayBuffer]);
    }
  };
  run().catch((e: unknown) => reply({ type: 'error', message: (e as Error).stack ?? String(e) }));
});
