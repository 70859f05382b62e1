import type { ThresholdConfig } from '../config/schema';
import { UserError } from '../util/errors';
import { f1Max, rankedCounts, youden } from './metrics';

/**
 * Decision thresholds for the image score, fitted on VALIDATION data only (never the test split).
 * Every strategy is computed and recorded; config.threshold.strategy picks one. The validation split
 * usually holds good images only, so the supervised strategies (f1, youden) are then undefined; and
 * an empirical tail estimate needs enough good images to reach the tail: the 99th percentile of 6
 * scores is their maximum, which about 1 good image in 7 exceeds. The selection then falls back,
 * explicitly and recorded, along FALLBACK_CHAIN to the first strategy that is defined and reliable
 * (mean + k std, a parametric tail, from 2 images on).
 */
export type ThresholdStrategy = ThresholdConfig['strategy'];
export const THRESHOLD_STRATEGIES: readonly ThresholdStrategy[] = [
  'f1',
  'percentile',
  'mean_std',
  'fpr',
  'youden',
];
/** Tried in this order after the requested strategy. */
export const FALLBACK_CHAIN: readonly ThresholdStrategy[] = ['percentile', 'mean_std', 'fpr'];

export interface StrategyResult {
  strategy: ThresholdStrategy;
  value: number | null;
  /** Why value is null. */
  reason?: string;
  /** Set when value is defined but rests on too few validation images for the selection to use it. */
  unreliable?: string;
  /** How it was computed, in words, for the report. */
  method: string;
  /** Fraction of good validation images at or above the threshold. */
  valFpr: number | null;
  /** Fraction of defective validation images at or above it (null without any). */
  valTpr: number | null;
}

export interface ThresholdSelection {
  requested: ThresholdStrategy;
  selected: ThresholdStrategy;
  /** Set when the requested strategy was undefined on this validation data. */
  fallback: { from: ThresholdStrategy; to: ThresholdStrategy; reason: string } | null;
  imageThreshold: number;
  strategies: StrategyResult[];
  validation: { good: number; defective: number };
}

/** numpy.percentile with the default 'linear' method: q in [0, 100]. */
export function percentile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  const sorted = Float64Array.from(values).sort();
  const pos = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The smallest double greater than v: a threshold that no score equal to v reaches. */
export function nextUp(v: number): number {
  if (Number.isNaN(v) || v === Number.POSITIVE_INFINITY) return v;
  if (v === 0) return Number.MIN_VALUE;
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, v);
  const bits = buf.getBigInt64(0);
  buf.setBigInt64(0, v > 0 ? bits + 1n : bits - 1n);
  return buf.getFloat64(0);
}

const NEEDS_DEFECTIVE = 'needs defective validation images; none in the validation split';

export function computeThresholds(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  cfg: ThresholdConfig,
): ThresholdSelection {
  const good: number[] = [];
  const bad: number[] = [];
  for (let i = 0; i < scores.length; i++) (labels[i] ? bad : good).push(scores[i]);
  if (good.length === 0) {
    throw new UserError(
      'INVALID_DATASET',
      'no good images in the validation split: thresholds need good validation images (raise val_fraction or add train/good images)',
    );
  }
  const rate = (list: number[], t: number | null) =>
    t === null || list.length === 0 ? null : list.filter((s) => s >= t).length / list.length;
  const result = (
    strategy: ThresholdStrategy,
    value: number | null,
    method: string,
    reason?: string,
  ): StrategyResult => ({
    strategy,
    value,
    method,
    ...(value === null ? { reason: reason ?? 'undefined' } : {}),
    valFpr: rate(good, value),
    valTpr: rate(bad, value),
  });

  const counts = rankedCounts(scores, labels);
  const f1 = bad.length > 0 ? f1Max(counts) : null;
  const j = bad.length > 0 ? youden(counts) : null;
  const mean = good.reduce((a, b) => a + b, 0) / good.length;
  // Population std (numpy's default); needs 2 values to say anything about spread.
  const std = Math.sqrt(good.reduce((a, b) => a + (b - mean) ** 2, 0) / good.length);

  // An empirical tail probability q needs at least 1/q good images to observe it once.
  const tooFew = (tail: number, what: string) => {
    if (tail <= 0) return undefined;
    const need = Math.ceil(1 / tail - 1e-9);
    return good.length < need
      ? `${what} needs at least ${need} good validation images, there are ${good.length}`
      : undefined;
  };
  const percentileCaveat = tooFew(1 - cfg.percentile / 100, `the ${cfg.percentile}th percentile`);
  const fprCaveat = tooFew(cfg.fpr, `a false-positive rate of ${cfg.fpr}`);

  const strategies: StrategyResult[] = [
    f1 === null
      ? result('f1', null, 'threshold maximising F1 on labelled validation images', NEEDS_DEFECTIVE)
      : result(
          'f1',
          f1.threshold,
          `threshold maximising F1 on ${scores.length} validation images (F1 ${f1.f1.value?.toFixed(4)})`,
          f1.f1.reason,
        ),
    {
      ...result(
        'percentile',
        percentile(good, cfg.percentile),
        `${cfg.percentile}th percentile of ${good.length} good validation scores`,
      ),
      ...(percentileCaveat ? { unreliable: percentileCaveat } : {}),
    },
    good.length < 2
      ? result(
          'mean_std',
          null,
          `mean + ${cfg.k} std of good validation scores`,
          'needs at least 2 good validation images',
        )
      : result(
          'mean_std',
          mean + cfg.k * std,
          `mean ${mean.toPrecision(6)} + ${cfg.k} x std ${std.toPrecision(6)} of ${good.length} good validation scores`,
        ),
    {
      ...result(
        'fpr',
        fprThreshold(good, cfg.fpr),
        `lowest threshold with at most ${cfg.fpr} of ${good.length} good validation images at or above it`,
      ),
      ...(fprCaveat ? { unreliable: fprCaveat } : {}),
    },
    j === null
      ? result(
          'youden',
          null,
          "threshold maximising Youden's J (TPR - FPR) on labelled validation images",
          NEEDS_DEFECTIVE,
        )
      : result(
          'youden',
          j.threshold,
          `threshold maximising Youden's J on ${scores.length} validation images (J ${j.j.value?.toFixed(4)})`,
          j.j.reason,
        ),
  ];

  const requested = cfg.strategy;
  const byName = (name: ThresholdStrategy) => strategies.find((s) => s.strategy === name)!;
  const chain = [requested, ...FALLBACK_CHAIN.filter((s) => s !== requested)].map(byName);
  // The first defined and reliable one; with none (a single good image), the first defined one.
  const chosen = chain.find((s) => s.value !== null && !s.unreliable) ?? chain.find((s) => s.value !== null)!;
  const skipped = chain.slice(0, chain.indexOf(chosen));
  return {
    requested,
    selected: chosen.strategy,
    fallback:
      skipped.length === 0
        ? null
        : {
            from: requested,
            to: chosen.strategy,
            reason: skipped.map((s) => `${s.strategy}: ${s.reason ?? s.unreliable}`).join('; '),
          },
    imageThreshold: chosen.value!,
    strategies,
    validation: { good: good.length, defective: bad.length },
  };
}

/**
 * Exact target false-positive rate on good scores: the lowest observed score t such that the
 * fraction of good scores >= t is <= fpr. If even the highest score would exceed it (fpr < 1/n),
 * the threshold sits just above the highest good score (FPR 0 on validation).
 */
export function fprThreshold(good: number[], fpr: number): number {
  const sorted = [...good].sort((a, b) => b - a);
  let best = nextUp(sorted[0]);
  for (let i = 0; i < sorted.length; i++) {
    if (i + 1 < sorted.length && sorted[i + 1] === sorted[i]) continue; // ties enter together
    if ((i + 1) / sorted.length > fpr) break;
    best = sorted[i];
  }
  return best;
}

/** Pixel threshold: the configured percentile of all map values of the good validation images. */
export function pixelThreshold(goodMapValues: Float32Array, q: number): number {
  if (goodMapValues.length === 0) throw new Error('pixel threshold: no good validation map values');
  return percentile(goodMapValues, q);
}

/**
 * Anchors of the serving score normalisation (see calibration.normaliseScore): min = lowest good
 * validation score (-> 0), threshold -> 0.5, and max = threshold + (threshold - min) (-> 1), i.e. one
 * straight line through min and the threshold, so normalised scores keep their spacing on both sides.
 */
export function scoreNormFor(goodScores: ArrayLike<number>, threshold: number): { min: number; max: number } {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < goodScores.length; i++) min = Math.min(min, goodScores[i]);
  if (!(min < threshold)) min = threshold - Math.max(Math.abs(threshold), 1e-6);
  return { min, max: threshold + (threshold - min) };
}
