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
