import * as tf from '@tensorflow/tfjs';
import type { AnomalyMapConfig } from '../config/schema';
import type { ScorableModel } from '../infer/scorable-model';
import { checkAnomalyMapConfig, scoreBorder, smoothingKernel } from '../model/anomaly-map-params';
import { ssimMap } from '../model/ssim';
import { DETECTOR_LABEL, isOnnxDetector } from '../models/onnx-detector';
import { UserError } from '../util/errors';

export { checkAnomalyMapConfig, scoreBorder, smoothingKernel };

/**
 * Per-pixel anomaly maps from an autoencoder's reconstruction, and the image score derived from them.
 * Used by evaluation and by serving: the same function on both sides keeps calibrated thresholds valid.
 *   map = mse_weight * mean_c (x - x')^2 + ssim_weight * mean_c (1 - SSIM(x, x')), Gaussian-smoothed;
 *   score = max of the map, or mean of its top-k pixels.
 */
export interface ScoredImages {
  /** n*size*size, row-major per image. */
  maps: Float32Array;
  scores: Float32Array;
  /** Wall time per image (its batch's time / batch size), ms, one entry per image. */
  latencyMs: number[];
}

/**
 * Separable Gaussian blur of [N,H,W,1] maps. Mirror ('symmetric', scipy's 'reflect') padding rather
 * than zeros: zero padding would pull border values down and hide defects at the image edge.
 */
export function smoothMaps(maps: tf.Tensor4D, sigma: number): tf.Tensor4D {
  if (sigma <= 0) return maps.clone();
  return tf.tidy(() => {
    const [, h, w] = maps.shape;
    const k = smoothingKernel(sigma, h, w);
    const radius = (k.length - 1) / 2;
    const padded = tf.mirrorPad(
      maps,
      [
        [0, 0],
        [radius, radius],
        [radius, radius],
        [0, 0],
      ],
      'symmetric',
    );
    const kx = tf.tensor4d(k, [1, k.length, 1, 1]);
    const ky = tf.tensor4d(k, [k.length, 1, 1, 1]);
    return tf.conv2d(tf.conv2d(padded, kx, 1, 'valid'), ky, 1, 'valid');
  });
}

/** Anomaly maps [N,H,W] of inputs and reconstructions [N,H,W,3] in [0,1]. */
export function anomalyMapTensor(x: tf.Tensor4D, recon: tf.Tensor4D, cfg: AnomalyMapConfig): tf.Tensor3D {
  checkAnomalyMapConfig(cfg);
  return tf.tidy(() => {
    const [n, h, w] = x.shape;
    let map: tf.Tensor = tf.zeros([n, h, w, 1]);
    if (cfg.mse_weight > 0) map = map.add(x.sub(recon).square().mean(-1, true).mul(cfg.mse_weight));
    if (cfg.ssim_weight > 0) {
      const dissim = tf.scalar(1).sub(ssimMap(x, recon).mean(-1, true));
      map = map.add(dissim.mul(cfg.ssim_weight));
    }
    return smoothMaps(map as tf.Tensor4D, cfg.smoothing_sigma).reshape([n, h, w]) as tf.Tensor3D;
  });
}

/**
 * Image scores [N] of maps [N,H,W] over their interior (without the score border): max, or mean of
 * the top-k pixels (k capped at the pixel count).
 */
export function imageScoreTensor(maps: tf.Tensor3D, cfg: AnomalyMapConfig): tf.Tensor1D {
  return tf.tidy(() => {
    const [n, h, w] = maps.shape;
    const b = scoreBorder(h, w, cfg);
    const ih = h - 2 * b.y;
    const iw = w - 2 * b.x;
    const inner = b.y || b.x ? maps.slice([0, b.y, b.x], [n, ih, iw]) : maps;
    const flat = inner.reshape([n, ih * iw]) as tf.Tensor2D;
    if (cfg.score === 'max') return flat.max(1) as tf.Tensor1D;
    return tf.topk(flat, Math.min(cfg.topk, ih * iw)).values.mean(1) as tf.Tensor1D;
  });
}

/** Same score on the CPU, for one h x w map already in memory. */
export function imageScore(full: Float32Array, h: number, w: number, cfg: AnomalyMapConfig): number {
  const b = scoreBorder(h, w, cfg);
  const map = new Float32Array((h - 2 * b.y) * (w - 2 * b.x));
  for (let y = b.y, o = 0; y < h - b.y; y++, o += w - 2 * b.x)
    map.set(full.subarray(y * w + b.x, y * w + w - b.x), o);
  if (cfg.score === 'max') return map.reduce((a, v) => Math.max(v, a), Number.NEGATIVE_INFINITY);
  const k = Math.min(cfg.topk, map.length);
  const sorted = map.sort();
  let sum = 0;
  for (let i = sorted.length - k; i < sorted.length; i++) sum += sorted[i];
  return sum / k;
}

/** A model's forward pass on `n` NHWC float32 images of size x size x 3: their reconstructions, same layout. */
export type Reconstruct = (images: Float32Array, n: number, size: number) => Promise<Float32Array>;

/**
 * The whole per-batch computation on another engine (e.g. lib/models/autoencoder/runner createOnnxScorer):
 * maps (n*size*size) and scores (n) of `n` NHWC float32 images, as anomalyMapTensor + imageScoreTensor.
 */
export type ScoreBatch = (
  images: Float32Array,
  n: number,
  size: number,
  cfg: AnomalyMapConfig,
) => Promise<{ maps: Float32Array; scores: Float32Array }>;

export interface ScoreOptions {
  /** Checked between batches: a cancelled activity stops within one batch. */
  signal?: AbortSignal;
  onBatch?: (done: number, total: number) => void;
  /**
   * Another engine's forward pass (e.g. lib/models/autoencoder/runner); default: the tfjs `model.predict`.
   * The anomaly map is then computed with tfjs.
   */
  reconstruct?: Reconstruct;
  /**
   * Another engine for the whole batch: reconstruction, map and score (`reconstruct` is then unused).
   * It must compute what the tfjs path does (test/eval-onnx-anomaly-map checks the ONNX one), so that
   * scores stay comparable with thresholds calibrated on either engine.
   */
  scoreBatch?: ScoreBatch;
}

/**
 * Scores `n` images (NHWC float32 in [0,1], size x size) in batches; every tensor is released before
 * returning. Runs on whatever tfjs backend is active (the caller selects it); `opts.reconstruct`
 * replaces only the model's forward pass, `opts.scoreBatch` all of a batch's work.
 */
export async function scoreImages(
  model: ScorableModel,
  images: Float32Array,
  n: number,
  size: number,
  cfg: AnomalyMapConfig,
  batchSize = 8,
  opts: ScoreOptions = {},
): Promise<ScoredImages> {
  checkAnomalyMapConfig(cfg);
  const px = size * size;
  if (images.length !== n * px * 3)
    throw new Error(`scoreImages: ${images.length} values is not ${n} images of ${size}x${size}x3`);
  const maps = new Float32Array(n * px);
  const scores = new Float32Array(n);
  const latencyMs: number[] = [];
  for (let start = 0; start < n; start += batchSize) {
    if (opts.signal?.aborted) throw new Error('scoring cancelled');
    const b = Math.min(batchSize, n - start);
    const t0 = performance.now();
    const batch = images.subarray(start * px * 3, (start + b) * px * 3);
    const { maps: m, scores: s } = opts.scoreBatch
      ? await opts.scoreBatch(batch, b, size, cfg)
      : await scoreBatchTfjs(tfjsModel(model), batch, b, size, cfg, opts.reconstruct);
    maps.set(m, start * px);
    scores.set(s, start);
    const perImage = (performance.now() - t0) / b;
    for (let i = 0; i < b; i++) latencyMs.push(perImage);
    opts.onBatch?.(start + b, n);
  }
  return { maps, scores, latencyMs };
}

function tfjsModel(model: ScorableModel): tf.LayersModel {
  if (isOnnxDetector(model))
    throw new UserError(
      'INVALID_ARGUMENT',
      `${DETECTOR_LABEL[model.kind]} models score on ONNX Runtime only (engine onnx or auto)`,
    );
  return model;
}

/** One batch on tfjs (the forward pass optionally elsewhere); releases its tensors. */
async function scoreBatchTfjs(
  model: tf.LayersModel,
  batch: Float32Array,
  b: number,
  size: number,
  cfg: AnomalyMapConfig,
  reconstruct: Reconstruct | undefined,
): Promise<{ maps: Float32Array; scores: Float32Array }> {
  const external = reconstruct ? await reconstruct(batch, b, size) : null;
  const mapT = tf.tidy(() => {
    const x = tf.tensor4d(batch, [b, size, size, 3]);
    const recon = external ? tf.tensor4d(external, [b, size, size, 3]) : (model.predict(x) as tf.Tensor4D);
    return anomalyMapTensor(x, recon, cfg);
  });
  const scoreT = imageScoreTensor(mapT, cfg);
  try {
    const [maps, scores] = await Promise.all([mapT.data(), scoreT.data()]);
    return { maps: maps as Float32Array, scores: scores as Float32Array };
  } finally {
    mapT.dispose();
    scoreT.dispose();
  }
}

/** Bilinear resize of n square maps from `from` to `to` px (masks stored at another size than the maps). */
export function resizeMaps(maps: Float32Array, n: number, from: number, to: number): Float32Array {
  if (from === to) return maps;
  return tf.tidy(() => {
    const t = tf.tensor4d(maps, [n, from, from, 1]);
    return tf.image.resizeBilinear(t, [to, to], true).dataSync() as Float32Array;
  });
}

/** uint8 NHWC RGB (the tensor cache) to float32 in [0,1], the model's input range. */
export function toUnitFloat(images: Uint8Array): Float32Array {
  const out = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) out[i] = images[i] / 255;
  return out;
}
