/**
 * Reconstruction losses of the autoencoder, combined with the weights of `config.loss`.
 * Every term is a scalar averaged over the batch; `computeLoss` returns the weighted total (for
 * gradients) and each unweighted term (for logging). Terms with weight 0 are not computed at all.
 *
 * Perceptual loss: feature-space L2 through a frozen tfjs model that the user points to with
 * `loss.perceptual_model`, or through the pretrained backbone's early layers (`loss.perceptual_backbone`,
 * an ONNX graph the ONNX Runtime engine runs: perceptual-graph.ts). Without either, the term is
 * DISABLED (weight forced to 0) and a statement saying so goes into the run metadata: features of an
 * untrained network carry no perceptual meaning, and the edge and SSIM terms already cover structure.
 *
 * Call `compute` inside tf.tidy / tf.variableGrads: intermediates are left to the enclosing scope.
 */
import * as tf from '@tensorflow/tfjs';
import { type BackboneWeights, loadBackbone } from '../../backbone';
import type { LossConfig } from '../../config/schema';
import { loadModel } from '../../model/io';
import { ssim } from '../../model/ssim';
import { UserError } from '../../util/errors';

export type LossTerm = 'mse' | 'ssim' | 'edge' | 'perceptual';
export const LOSS_TERMS: readonly LossTerm[] = ['mse', 'ssim', 'edge', 'perceptual'];

export interface LossOutput {
  total: tf.Scalar;
  terms: Partial<Record<LossTerm, tf.Scalar>>;
}

export function mseLoss(target: tf.Tensor4D, pred: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.squaredDifference(target, pred).mean() as tf.Scalar);
}

/** 1 - mean SSIM (Gaussian 11x11, sigma 1.5, dynamic range 1). */
export function ssimLoss(target: tf.Tensor4D, pred: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.sub(1, ssim(target, pred).mean()) as tf.Scalar);
}

export const SOBEL_X = [-1, 0, 1, -2, 0, 2, -1, 0, 1];
export const SOBEL_Y = [-1, -2, -1, 0, 0, 0, 1, 2, 1];
/** Keeps sqrt differentiable where the gradient is exactly zero (flat regions). */
export const EDGE_EPS = 1e-6;

/**
 * Sobel gradient magnitude per channel, [N,H,W,C], zero padding. One plain conv2d (wasm has no
 * depthwise-conv gradients) with a [3,3,C,2C] filter giving gx, gy of every channel, in NHWC.
 */
export function sobelMagnitude(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const v = new Float32Array(9 * c * 2 * c);
    for (let t = 0; t < 9; t++)
      for (let ch = 0; ch < c; ch++) {
        v[(t * c + ch) * 2 * c + 2 * ch] = SOBEL_X[t];
        v[(t * c + ch) * 2 * c + 2 * ch + 1] = SOBEL_Y[t];
      }
    const g = tf.conv2d(x, tf.tensor4d(v, [3, 3, c, 2 * c]), 1, 'same');
    return g.square().reshape([n, h, w, c, 2]).sum(4).add(EDGE_EPS).sqrt() as tf.Tensor4D;
  });
}

/** L1 distance between the Sobel gradient magnitudes of target and reconstruction. */
export function edgeLoss(target: tf.Tensor4D, pred: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.abs(tf.sub(sobelMagnitude(target), sobelMagnitude(pred))).mean() as tf.Scalar);
}

/** A frozen feature extractor: maps [N,H,W,3] in [0,1] to any feature tensor. */
export interface FeatureExtractor {
  features(x: tf.Tensor4D): tf.Tensor;
  dispose(): void;
}

export function perceptualLoss(
  extractor: FeatureExtractor,
  target: tf.Tensor4D,
  pred: tf.Tensor4D,
): tf.Scalar {
  return tf.tidy(
    () => tf.squaredDifference(extractor.features(target), extractor.features(pred)).mean() as tf.Scalar,
  );
}

/** Loads the user's feature extractor (a tfjs layers model folder) and freezes it. */
export async function loadFeatureExtractor(dir: string, imageSize: number): Promise<FeatureExtractor> {
  const model = await loadModel(dir);
  model.trainable = false;
  const shape = model.inputs[0]?.shape ?? [];
  const [h, w, c] = shape.slice(1);
  if (c !== null && c !== undefined && c !== 3) {
    throw new UserError(
      'INVALID_CONFIG',
      `loss.perceptual_model ${dir}: input has ${c} channels, expected 3 (RGB)`,
    );
  }
  if ((h !== null && h !== imageSize) || (w !== null && w !== imageSize)) {
    throw new UserError(
      'INVALID_CONFIG',
      `loss.perceptual_model ${dir}: input ${h}x${w} does not match image_size ${imageSize} (use a model with a free spatial size)`,
    );
  }
  return {
    features: (x) => model.apply(x, { training: false }) as tf.Tensor,
    dispose: () => model.dispose(),
  };
}

/**
 * Wraps a loss term as ONE node of the gradient tape: the forward keeps only the scalar, and the
 * backward recomputes the term to differentiate it. Under tfjs' tape every intermediate (and its
 * gradient) of a many-op term like SSIM would otherwise stay alive for the whole backward pass of the
 * network: ~0.6 GB at 128x128, batch 32. Costs one extra forward evaluation of the term.
 */
export function recomputedTerm(
  fn: (target: tf.Tensor4D, pred: tf.Tensor4D) => tf.Scalar,
): (target: tf.Tensor4D, pred: tf.Tensor4D) => tf.Scalar {
  return (target, pred) => {
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const p = args[0] as tf.Tensor4D;
      const save = args[1] as tf.GradSaveFunc;
      save([p]);
      return {
        value: tf.tidy(() => fn(target, p)),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          // A gradient computed inside the outer backward pass: tfjs' engine resets its (single)
          // active tape when an outermost gradient finishes, so keep the outer tape across the call.
          const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
          const outerTape = state.activeTape;
          let g: tf.Tensor;
          try {
            g = tf.grad((q: tf.Tensor) => fn(target, q as tf.Tensor4D))(saved[0]);
          } finally {
            state.activeTape = outerTape;
          }
          return [tf.mul(g, dy)];
        },
      };
    });
    return f(pred) as tf.Scalar;
  };
}

const ssimTerm = recomputedTerm(ssimLoss);
const edgeTerm = recomputedTerm(edgeLoss);

/** Backbone stages of the ONNX perceptual term: 0 (stride 2) and 1 (stride 4). */
export const PERCEPTUAL_STAGES = [0, 1];

/** The pretrained backbone behind the ONNX perceptual term (lib/models/autoencoder/perceptual-graph). */
export interface OnnxPerceptual {
  weights: BackboneWeights;
  stages: number[];
}

/** The loss as configured for one run, plus the statement recorded in its metadata. */
export interface LossFunction {
  weights: Record<LossTerm, number>;
  /** `onnx`: the term runs on the ONNX Runtime engine's own graph, not in `compute` (tfjs). */
  perceptual: { enabled: boolean; statement: string; onnx: OnnxPerceptual | null };
  compute(target: tf.Tensor4D, pred: tf.Tensor4D): LossOutput;
  /** An engine that cannot run the ONNX perceptual term turns it off, saying why (metadata). */
  disableOnnxPerceptual(reason: string): void;
  dispose(): void;
}

/** The backbone for `loss.perceptual_backbone`, or null with the reason the term is off. */
async function perceptualBackbone(
  cfg: LossConfig,
): Promise<{ onnx: OnnxPerceptual; statement: string } | { onnx: null; statement: string }> {
  if (cfg.perceptual_backbone === 'none')
    return {
      onnx: null,
      statement:
        'disabled: loss.perceptual > 0 but neither loss.perceptual_model nor loss.perceptual_backbone is set; the term was given weight 0 ' +
        '(random or untrained features are not perceptual)',
    };
  try {
    const weights = await loadBackbone({ variant: 'lite0', log: () => {} });
    const strides = PERCEPTUAL_STAGES.map((st) => weights.stages[st].stride).join(', ');
    return {
      onnx: { weights, stages: PERCEPTUAL_STAGES },
      statement: `feature-space L2 (relative to the target's feature energy) of frozen EfficientNet-Lite0 features at strides ${strides}, on ONNX Runtime`,
    };
  } catch (err) {
    if (cfg.perceptual_backbone !== 'auto' || !(err instanceof UserError)) throw err;
    return {
      onnx: null,
      statement: `disabled: loss.perceptual_backbone auto, but the backbone is not available (${err.message.split('\n')[0]})`,
    };
  }
}

export async function createLoss(cfg: LossConfig, imageSize: number): Promise<LossFunction> {
  let extractor: FeatureExtractor | null = null;
  let onnx: OnnxPerceptual | null = null;
  let statement: string;
  if (cfg.perceptual > 0 && cfg.perceptual_model) {
    extractor = await loadFeatureExtractor(cfg.perceptual_model, imageSize);
    statement = `feature-space L2 through the frozen model ${cfg.perceptual_model}`;
  } else if (cfg.perceptual > 0) {
    ({ onnx, statement } = await perceptualBackbone(cfg));
  } else {
    statement = 'disabled: loss.perceptual = 0';
  }
  const weights: Record<LossTerm, number> = {
    mse: cfg.mse,
    ssim: cfg.ssim,
    edge: cfg.edge,
    perceptual: extractor || onnx ? cfg.perceptual : 0,
  };
  const perceptual = { enabled: extractor !== null || onnx !== null, statement, onnx };
  const ex = extractor;
  const perceptualTerm = recomputedTerm((t, p) => perceptualLoss(ex as FeatureExtractor, t, p));
  return {
    weights,
    perceptual,
    disableOnnxPerceptual(reason) {
      if (!perceptual.onnx) return;
      perceptual.onnx = null;
      perceptual.enabled = false;
      perceptual.statement = `disabled: ${reason}`;
      weights.perceptual = 0;
    },
    compute(target, pred) {
      const terms: Partial<Record<LossTerm, tf.Scalar>> = {};
      if (weights.mse > 0) terms.mse = mseLoss(target, pred);
      if (weights.ssim > 0) terms.ssim = ssimTerm(target, pred);
      if (weights.edge > 0) terms.edge = edgeTerm(target, pred);
      if (weights.perceptual > 0 && ex) terms.perceptual = perceptualTerm(target, pred);
      const parts = (Object.keys(terms) as LossTerm[]).map((k) => tf.mul(terms[k] as tf.Scalar, weights[k]));
      const total = (parts.length ? tf.addN(parts) : tf.scalar(0)) as tf.Scalar;
      return { total, terms };
    },
    dispose() {
      extractor?.dispose();
    },
  };
}
