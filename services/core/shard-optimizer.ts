/**
 * The optimiser update of tf.train.adam and tf.train.momentum(lr, 0.9), as plain loops over one
 * slice of the flat weight vector. The data-parallel threads (parallel-worker.ts) each update
 * their own slice instead of all running tfjs's update over every weight: the update is per
 * element, so slices are independent. Every operation is rounded to float32 (Math.fround) in
 * the order tfjs's ops apply them, so the result is the float32 arithmetic of the wasm
 * backend's kernels, not a float64 variant of it.
 */
import type { OptimizerName } from './train.js';

const f = Math.fround;

export interface ShardOptimizer {
  /** weights[i] -= update(gradient[i]) for the slice this optimiser holds the state of. */
  apply(gradient: Float32Array, weights: Float32Array): void;
}

/** tf.train.adam(learningRate): beta1 0.9, beta2 0.999, epsilon the backend's (1e-7 on float32 backends). */
export function adamShard(size: number, learningRate: number, epsilon = 1e-7, beta1 = 0.9, beta2 = 0.999): ShardOptimizer {
  const m = new Float32Array(size);
  const v = new Float32Array(size);
  const [b1, b2, ob1, ob2, eps, negLr] = [f(beta1), f(beta2), f(1 - beta1), f(1 - beta2), f(epsilon), f(-learningRate)];
  // tfjs keeps beta^t as a float32 variable, multiplied by beta after each step.
  let accBeta1 = b1;
  let accBeta2 = b2;
  return {
    apply(g, w) {
      const c1 = f(1 - accBeta1);
      const c2 = f(1 - accBeta2);
      for (let i = 0; i < size; i++) {
        const gi = g[i]!;
        const mi = f(f(m[i]! * b1) + f(gi * ob1));
        const vi = f(f(v[i]! * b2) + f(f(gi * gi) * ob2));
        m[i] = mi;
        v[i] = vi;
        const step = f(f(mi / c1) / f(f(Math.sqrt(f(vi / c2))) + eps));
        w[i] = f(step * negLr) + w[i]!;
      }
      accBeta1 = f(accBeta1 * b1);
      accBeta2 = f(accBeta2 * b2);
    },
  };
}

/** tf.train.momentum(learningRate, momentum) without Nesterov: acc = momentum·acc + g; w += −lr·acc. */
export function momentumShard(size: number, learningRate: number, momentum = 0.9): ShardOptimizer {
  const acc = new Float32Array(size);
  const [mom, negLr] = [f(momentum), f(-learningRate)];
  return {
    apply(g, w) {
      for (let i = 0; i < size; i++) {
        const a = f(f(mom * acc[i]!) + g[i]!);
        acc[i] = a;
        w[i] = f(negLr * a) + w[i]!;
      }
    },
  };
}

/** The update trainLocal's optimiser name stands for (train.ts makeOptimizer), for one slice of `size` weights. */
export function shardOptimizer(name: OptimizerName, size: number, learningRate: number, epsilon?: number): ShardOptimizer {
  return name === 'sgd' ? momentumShard(size, learningRate) : adamShard(size, learningRate, epsilon);
}

/**
 * sum[i] = Σ over slots of slots[t][from + i], in slot order (so the sum does not depend on
 * which thread computes it). Float32Array stores round each partial sum to float32.
 */
export function sumSlots(slots: readonly Float32Array[], from: number, sum: Float32Array): void {
  const n = sum.length;
  sum.set(slots[0]!.subarray(from, from + n));
  for (let t = 1; t < slots.length; t++) {
    const g = slots[t]!;
    for (let i = 0; i < n; i++) sum[i] = sum[i]! + g[from + i]!;
  }
}
