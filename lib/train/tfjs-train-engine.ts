/**
 * The tfjs training engine: forward, loss and backward pass under tfjs' tape on the selected tfjs
 * backend (tfjs-node / WebGPU when installed, else wasm with our training kernels), tfjs' Adam.
 * The fallback when ONNX Runtime is unavailable, and the engine of accelerated tfjs backends.
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from '../config/schema';
import type { LossFunction, LossTerm } from '../models/autoencoder/losses';
import { unetTrainForward } from '../models/autoencoder/train-forward';
import type { StepOutput, TrainEngine } from './engine-types';

/** One optimisation step (forward, loss, gradients, clipping, update); every intermediate tensor is released. */
export function trainOnBatch(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  loss: LossFunction,
  x: tf.Tensor4D,
  cfg: TrainingConfig,
  lr: number,
  /** What the output should be (default: `x`). */
  target: tf.Tensor4D = x,
): StepOutput {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  let termTensors: Partial<Record<LossTerm, tf.Scalar>> = {};
  const { value, grads } = tf.variableGrads(() => {
    // Fused conv+bias+activation with hand-written gradients (lib/models/autoencoder/train-forward): same
    // function as model.apply, a third of the activation memory.
    const pred = unetTrainForward(model, x, cfg.model.widths.length);
    const out = loss.compute(target, pred);
    termTensors = Object.fromEntries(Object.entries(out.terms).map(([k, t]) => [k, tf.keep(t)]));
    return out.total;
  }, vars);
  tf.tidy(() => {
    let g = grads;
    if (cfg.grad_clip !== null) {
      const norm = tf.sqrt(tf.addN(Object.values(grads).map((t) => tf.sum(tf.square(t))))).dataSync()[0];
      if (norm > cfg.grad_clip) {
        const scale = cfg.grad_clip / (norm + 1e-12);
        g = Object.fromEntries(Object.entries(grads).map(([k, t]) => [k, tf.mul(t, scale)]));
      }
    }
    optimizer.applyGradients(g);
    // AdamW: decoupled weight decay on kernels (not biases), w <- w - lr * wd * w.
    if (cfg.optimizer.name === 'adamw' && cfg.optimizer.weight_decay > 0) {
      const keep = 1 - lr * cfg.optimizer.weight_decay;
      for (const v of vars) if (v.shape.length > 1) v.assign(tf.mul(v, keep));
    }
  });
  const lossValue = value.dataSync()[0];
  const terms: Partial<Record<LossTerm, number>> = {};
  for (const [k, t] of Object.entries(termTensors) as [LossTerm, tf.Scalar][]) {
    terms[k] = t.dataSync()[0];
    t.dispose();
  }
  value.dispose();
  tf.dispose(grads);
  return { loss: lossValue, terms };
}

export function setLearningRate(optimizer: tf.Optimizer, lr: number): void {
  // tfjs optimizers read `learningRate` on every applyGradients call.
  (optimizer as unknown as { learningRate: number }).learningRate = lr;
}

export function createOptimizer(cfg: TrainingConfig): tf.Optimizer {
  return tf.train.adam(cfg.optimizer.lr);
}

/** The configured loss (value only) of `n` images against the reconstruction `recon` makes of them. */
export async function tfjsLossValue(
  loss: LossFunction,
  images: Float32Array,
  n: number,
  size: number,
  recon: (x: tf.Tensor4D) => tf.Tensor4D,
): Promise<number> {
  const v = tf.tidy(() => {
    const x = tf.tensor4d(images, [n, size, size, 3]);
    return loss.compute(x, recon(x)).total;
  });
  const value = (await v.data())[0];
  v.dispose();
  return value;
}

/** trainOnBatch behind the engine interface; the model and optimizer are always current. */
export class TfjsTrainEngine implements TrainEngine {
  readonly name = 'tfjs' as const;
  constructor(
    private readonly model: tf.LayersModel,
    private readonly optimizer: tf.Optimizer,
    private readonly loss: LossFunction,
    private readonly cfg: TrainingConfig,
    readonly description: string,
  ) {}

  async step(images: Float32Array, n: number, lr: number, targets = images): Promise<StepOutput> {
    const s = this.cfg.image_size;
    const x = tf.tensor4d(images, [n, s, s, 3]);
    const y = targets === images ? x : tf.tensor4d(targets, [n, s, s, 3]);
    try {
      setLearningRate(this.optimizer, lr);
      return trainOnBatch(this.model, this.optimizer, this.loss, x, this.cfg, lr, y);
    } finally {
      x.dispose();
      if (y !== x) y.dispose();
    }
  }

  async evaluate(images: Float32Array, n: number): Promise<number> {
    const s = this.cfg.image_size;
    return tfjsLossValue(this.loss, images, n, s, (x) => this.model.predict(x) as tf.Tensor4D);
  }

  async syncToModel(): Promise<void> {}
  async syncFromModel(): Promise<void> {}
  async release(): Promise<void> {}
}
