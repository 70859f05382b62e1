import type { Calibration } from '../model/calibration';

export type { Calibration };

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
