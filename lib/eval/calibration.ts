import type { AnomalyMapConfig } from '../config/schema';

/**
 * What serving needs to turn a model's raw anomaly map into a decision: the thresholds fitted on
 * validation data by the threshold step, and how the map itself was computed (the same weights and
 * smoothing must be used at serving time, or the thresholds do not apply).
 * Written into the model package (`calibration.json`) by the threshold step.
 */
export interface Calibration {
  /** Raw image score (max or top-k mean of the map) at or above which an image is "defective". */
  imageThreshold: number;
  /** Raw per-pixel map value at or above which a pixel is drawn as anomalous. */
  pixelThreshold: number;
  /**
   * Anchors of the piecewise-linear normalisation (see `normaliseScore`): `min` maps to 0,
   * `imageThreshold` to 0.5, `max` to 1. Chosen by the threshold step from validation scores
   * (min = lowest validation score, max = above the threshold, see threshold-step).
   */
  scoreNorm: { min: number; max: number };
  /** Threshold strategy actually used (after any fallback), e.g. 'percentile'. */
  strategy: string;
  anomalyMap: AnomalyMapConfig;
  /** Side (px) of the square images the model and the thresholds were computed at. */
  imageSize: number;
}

const clamp01 = (v: number): number => (v < 0 ? 0 : Math.min(v, 1));

/**
 * Maps a raw image score to [0,1] so that the decision threshold is exactly 0.5:
 *   s <= t: 0.5 * clamp01((s - min) / (t - min))
 *   s >  t: 0.5 + 0.5 * clamp01((s - t) / (max - t))
 * Piecewise linear (not one global min-max) because one straight line through min and max would
 * put the threshold anywhere; this way "normalised >= 0.5" is the same decision as "score >= t".
 * Degenerate spans (t <= min or max <= t) saturate instead of dividing by zero.
 */
export function normaliseScore(
  score: number,
  cal: Pick<Calibration, 'imageThreshold' | 'scoreNorm'>,
): number {
  const t = cal.imageThreshold;
  const { min, max } = cal.scoreNorm;
  if (!Number.isFinite(score)) return score > 0 ? 1 : 0;
  if (score < t) return t > min ? 0.5 * clamp01((score - min) / (t - min)) : 0;
  if (score === t) return 0.5;
  return max > t ? 0.5 + 0.5 * clamp01((score - t) / (max - t)) : 1;
}
