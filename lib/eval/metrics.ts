import { defined, type MetricValue, undefinedBecause } from './metric-value';
import { argsortDescending } from './sort';

/**
 * Image-level detection metrics: exact (every distinct score is a threshold, no binning), with ties
 * treated as scikit-learn does (tied scores enter a curve together, as one step). Label 1 = defective
 * (the positive class); a score at or above a threshold predicts "defective".
 */

/** Cumulative counts at each distinct score, from the highest down: tps[k]/fps[k] = #pos/#neg with score >= thresholds[k]. */
export interface RankedCounts {
  thresholds: number[];
  tps: number[];
  fps: number[];
  positives: number;
  negatives: number;
}

export function rankedCounts(scores: ArrayLike<number>, labels: ArrayLike<number>): RankedCounts {
  if (scores.length !== labels.length)
    throw new Error(`scores (${scores.length}) and labels (${labels.length}) differ in length`);
  const order = argsortDescending(scores);
  const thresholds: number[] = [];
  const tps: number[] = [];
  const fps: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < order.length; i++) {
    const j = order[i];
    if (labels[j]) tp++;
    else fp++;
    const last = i === order.length - 1 || scores[order[i + 1]] !== scores[j];
    if (last) {
      thresholds.push(scores[j]);
      tps.push(tp);
      fps.push(fp);
    }
  }
  return { thresholds, tps, fps, positives: tp, negatives: fp };
}

function classCheck(c: RankedCounts, what = 'images'): string | null {
  if (c.positives === 0 && c.negatives === 0) return `no ${what}`;
  if (c.positives === 0) return `no defective ${what} (only one class)`;
  if (c.negatives === 0) return `no good ${what} (only one class)`;
  if (c.thresholds.length === 1)
    return `all ${c.positives + c.negatives} scores are equal (no ranking to evaluate)`;
  return null;
}

/** ROC curve from (0,0); `thresholds[i]` belongs to point i+1 (point 0 is "nothing predicted defective"). */
export interface RocCurve {
  fpr: number[];
  tpr: number[];
  thresholds: number[];
}

export function rocCurve(c: RankedCounts): RocCurve {
  const fpr = [0];
  const tpr = [0];
  for (let k = 0; k < c.thresholds.length; k++) {
    fpr.push(c.negatives ? c.fps[k] / c.negatives : 0);
    tpr.push(c.positives ? c.tps[k] / c.positives : 0);
  }
  return { fpr, tpr, thresholds: [...c.thresholds] };
}

/** Trapezoidal area of the ROC curve: tied scores get half credit, exactly as roc_auc_score. */
export function auroc(c: RankedCounts, what = 'images'): MetricValue {
  const bad = classCheck(c, what);
  if (bad) return undefinedBecause(bad);
  const { fpr, tpr } = rocCurve(c);
  let area = 0;
  for (let i = 1; i < fpr.length; i++) area += ((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1])) / 2;
  return defined(area);
}

/** Precision-recall points from the highest threshold down, starting at (recall 0, precision 1) like sklearn. */
export interface PrCurve {
  precision: number[];
  recall: number[];
  thresholds: number[];
}

export function prCurve(c: RankedCounts): PrCurve {
  const precision = [1];
  const recall = [0];
  for (let k = 0; k < c.thresholds.length; k++) {
    precision.push(c.tps[k] / (c.tps[k] + c.fps[k]));
    recall.push(c.positives ? c.tps[k] / c.positives : 0);
  }
  return { precision, recall, thresholds: [...c.thresholds] };
}

/** sklearn's average_precision_score: sum over thresholds of (R_k - R_{k-1}) * P_k (step rule, no interpolation). */
export function averagePrecision(c: RankedCounts, what = 'images'): MetricValue {
  const bad = classCheck(c, what);
  if (bad) return undefinedBecause(bad);
  let ap = 0;
  let prevRecall = 0;
  for (let k = 0; k < c.thresholds.length; k++) {
    const recall = c.tps[k] / c.positives;
    ap += (recall - prevRecall) * (c.tps[k] / (c.tps[k] + c.fps[k]));
    prevRecall = recall;
  }
  return defined(ap);
}

export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export function confusionAt(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  threshold: number,
): Confusion {
  const m: Confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < scores.length; i++) {
    const pred = scores[i] >= threshold;
    if (labels[i]) pred ? m.tp++ : m.fn++;
    else pred ? m.fp++ : m.tn++;
  }
  return m;
}

export interface ThresholdedMetrics {
  threshold: number;
  confusion: Confusion;
  precision: MetricValue;
  recall: MetricValue;
  f1: MetricValue;
  accuracy: MetricValue;
}

export function metricsAt(m: Confusion, threshold: number): ThresholdedMetrics {
  const pos = m.tp + m.fn;
  const total = m.tp + m.fp + m.tn + m.fn;
  return {
    threshold,
    confusion: m,
    precision:
      m.tp + m.fp > 0 ? defined(m.tp / (m.tp + m.fp)) : undefinedBecause('no image predicted defective'),
    recall: pos > 0 ? defined(m.tp / pos) : undefinedBecause('no defective images'),
    f1: pos > 0 ? defined((2 * m.tp) / (2 * m.tp + m.fp + m.fn)) : undefinedBecause('no defective images'),
    accuracy: total > 0 ? defined((m.tp + m.tn) / total) : undefinedBecause('no images'),
  };
}

/**
 * Best F1 over all thresholds (every distinct score). On equal F1 the lowest threshold wins, which
 * is what argmax over sklearn's ascending precision_recall_curve thresholds picks.
 */
export function f1Max(c: RankedCounts): { f1: MetricValue; threshold: number | null } {
  if (c.positives === 0) return { f1: undefinedBecause('no defective images'), threshold: null };
  let best = -1;
  let bestT: number | null = null;
  for (let k = 0; k < c.thresholds.length; k++) {
    const fn = c.positives - c.tps[k];
    const f1 = (2 * c.tps[k]) / (2 * c.tps[k] + c.fps[k] + fn);
    if (f1 >= best) {
      best = f1;
      bestT = c.thresholds[k];
    }
  }
  return { f1: defined(best), threshold: bestT };
}

/** Youden's J = max(TPR - FPR); on equal J the highest threshold (fewest false alarms) wins. */
export function youden(c: RankedCounts): { j: MetricValue; threshold: number | null } {
  const bad = classCheck(c);
  if (bad) return { j: undefinedBecause(bad), threshold: null };
  let best = Number.NEGATIVE_INFINITY;
  let bestT: number | null = null;
  for (let k = 0; k < c.thresholds.length; k++) {
    const j = c.tps[k] / c.positives - c.fps[k] / c.negatives;
    if (j > best) {
      best = j;
      bestT = c.thresholds[k];
    }
  }
  return { j: defined(best), threshold: bestT };
}

export interface ImageMetrics {
  count: number;
  positives: number;
  negatives: number;
  auroc: MetricValue;
  ap: MetricValue;
  atThreshold: ThresholdedMetrics;
  f1Max: { f1: MetricValue; threshold: number | null };
  roc: RocCurve;
  pr: PrCurve;
}

export function imageMetrics(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  threshold: number,
): ImageMetrics {
  const c = rankedCounts(scores, labels);
  return {
    count: scores.length,
    positives: c.positives,
    negatives: c.negatives,
    auroc: auroc(c),
    ap: averagePrecision(c),
    atThreshold: metricsAt(confusionAt(scores, labels, threshold), threshold),
    f1Max: f1Max(c),
    roc: rocCurve(c),
    pr: prCurve(c),
  };
}

export interface DefectTypeMetrics {
  defectType: string;
  count: number;
  meanScore: number;
  /** Fraction of this type's images at or above the threshold. */
  detected: MetricValue;
  /** This defect type vs all good images. */
  auroc: MetricValue;
  ap: MetricValue;
}

/** One row per defect type (label 1), each scored against all good images (label 0). */
export function perDefectType(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  defectTypes: readonly string[],
  threshold: number,
): DefectTypeMetrics[] {
  const good: number[] = [];
  const byType = new Map<string, number[]>();
  for (let i = 0; i < scores.length; i++) {
    if (!labels[i]) good.push(i);
    else {
      const list = byType.get(defectTypes[i]) ?? [];
      list.push(i);
      byType.set(defectTypes[i], list);
    }
  }
  return [...byType.keys()].sort().map((defectType) => {
    const idx = byType.get(defectType)!;
    const sub = [...good, ...idx];
    const c = rankedCounts(
      sub.map((i) => scores[i]),
      sub.map((i) => labels[i]),
    );
    const hits = idx.filter((i) => scores[i] >= threshold).length;
    return {
      defectType,
      count: idx.length,
      meanScore: idx.reduce((a, i) => a + scores[i], 0) / idx.length,
      detected: defined(hits / idx.length),
      auroc: auroc(c),
      ap: averagePrecision(c),
    };
  });
}
