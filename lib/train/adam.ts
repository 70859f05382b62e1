/**
 * Adam on plain Float32Arrays, numerically the update of tf.train.adam (tfjs-core AdamOptimizer):
 *   t = iterations + 1;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *   w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * so that the ONNX training engine (whose weights live outside tfjs between epochs) and the tfjs
 * engine follow the same trajectory and share one checkpoint format (moments + iterations).
 */
export interface AdamHyper {
  beta1: number;
  beta2: number;
  /** tfjs' default: the backend epsilon, 1e-7 for float32. */
  epsilon: number;
}

export const TFJS_ADAM: AdamHyper = { beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };

export interface AdamSlot {
  value: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/**
 * Applies one Adam step to every slot with its gradient. `iterations` is the number of steps taken
 * before this one (tfjs' `iterations`); the caller increments it afterwards.
 */
export function adamStep(
  slots: AdamSlot[],
  grads: Float32Array[],
  lr: number,
  iterations: number,
  h: AdamHyper = TFJS_ADAM,
): void {
  const t = iterations + 1;
  const c1 = 1 - h.beta1 ** t;
  const c2 = 1 - h.beta2 ** t;
  const b1 = h.beta1;
  const b2 = h.beta2;
  for (let s = 0; s < slots.length; s++) {
    const { value, m, v } = slots[s];
    const g = grads[s];
    if (g.length !== value.length)
      throw new Error(`adamStep: gradient ${s} has ${g.length} values, parameter ${value.length}`);
    for (let i = 0; i < value.length; i++) {
      const gi = g[i];
      const mi = b1 * m[i] + (1 - b1) * gi;
      const vi = b2 * v[i] + (1 - b2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      value[i] -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + h.epsilon);
    }
  }
}

/** Global L2 norm of all gradients (float64 accumulation). */
export function globalNorm(grads: Float32Array[]): number {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += g[i] * g[i];
  return Math.sqrt(sum);
}

/** Scales the gradients in place so that their global norm is at most `maxNorm` (as trainOnBatch does). */
export function clipByGlobalNorm(grads: Float32Array[], maxNorm: number): number {
  const norm = globalNorm(grads);
  if (norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-12);
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= scale;
  }
  return norm;
}
