import type { CachedSplit } from '../data/tensor-cache';
import { resizeMaps } from '../eval/anomaly-map';
import { normaliseScore } from '../eval/calibration';
import type { MetricValue } from '../eval/metric-value';
import { type DefectTypeMetrics, type ImageMetrics, imageMetrics, perDefectType } from '../eval/metrics';
import { type PixelMetrics, pixelMetrics } from '../eval/pixel-metrics';
import type { LatencyStats, ScoresFile } from '../eval/scores-file';
import type { ThresholdsFile } from '../eval/threshold-step';
import { type TargetCheck, targetChecks } from './targets';

/** Everything a category report is computed from (all already on disk after validate/threshold). */
export interface ReportInput {
  category: string;
  run: { pipeline: string; runId: string } | null;
  scores: ScoresFile;
  thresholds: ThresholdsFile;
  /** Test maps at scores.imageSize, in scores.test order. */
  testMaps: Float32Array;
  /** The test split of the tensor cache (images for tiles, masks for pixel metrics). */
  test: CachedSplit;
  training: {
    model?: string | null;
    backend: string | null;
    peakRssMb: number | null;
    deviceFallback?: string;
  };
}

export interface Prediction {
  id: string;
  path: string;
  defectType: string;
  label: 0 | 1;
  score: number;
  normalisedScore: number;
  prediction: 0 | 1;
}

/** report.json: the single source of every number in report.md / report.html / predictions.csv. */
export interface CategoryReport {
  version: 1;
  category: string;
  generatedAt: string;
  run: { pipeline: string; runId: string } | null;
  imageSize: number;
  testImages: number;
  thresholds: Omit<ThresholdsFile, 'calibration'> & { scoreNorm: { min: number; max: number } };
  image: ImageMetrics;
  pixel: PixelMetrics;
  perDefectType: DefectTypeMetrics[];
  latency: LatencyStats;
  training: {
    model?: string | null;
    backend: string | null;
    peakRssMb: number | null;
    deviceFallback?: string;
  };
  targets: TargetCheck[];
  predictions: Prediction[];
  /** Test indices of the worst errors, most confident first (good images scored highest, defects lowest). */
  worstFalsePositives: number[];
  worstFalseNegatives: number[];
}

export const WORST_K = 4;

export function buildCategoryReport(input: ReportInput): CategoryReport {
  const { scores, thresholds, test } = input;
  const recs = scores.test;
  if (recs.length !== test.count || recs.some((r, i) => r.id !== test.records[i].id)) {
    throw new Error(
      `scores.json (${recs.length} test images) and the tensor cache (${test.count}) disagree; rerun the validate step`,
    );
  }
  const t = thresholds.imageThreshold;
  const s = recs.map((r) => r.score);
  const y = recs.map((r) => r.label);
  const image = imageMetrics(s, y, t);

  let pixel: PixelMetrics;
  if (test.masks) {
    // Metrics at the mask's resolution: the cache stores masks at the image size, so this is a no-op
    // unless a differently sized cache is paired with the maps.
    const maps = resizeMaps(input.testMaps, recs.length, scores.imageSize, test.size);
    pixel = pixelMetrics(maps, test.masks, test.count, test.size, test.size);
  } else {
    const u: MetricValue = { value: null, reason: 'the test split has no ground-truth masks' };
    pixel = { pixels: 0, defectPixels: 0, regions: 0, auroc: u, ap: u, aupro: u, fprLimit: 0.3 };
  }

  const cal = thresholds.calibration;
  const predictions: Prediction[] = recs.map((r) => ({
    id: r.id,
    path: r.source,
    defectType: r.defectType,
    label: r.label,
    score: r.score,
    normalisedScore: normaliseScore(r.score, cal),
    prediction: r.score >= t ? 1 : 0,
  }));
  const idx = recs.map((_, i) => i);
  const worstFalsePositives = idx
    .filter((i) => y[i] === 0 && s[i] >= t)
    .sort((a, b) => s[b] - s[a])
    .slice(0, WORST_K);
  const worstFalseNegatives = idx
    .filter((i) => y[i] === 1 && s[i] < t)
    .sort((a, b) => s[a] - s[b])
    .slice(0, WORST_K);

  const { calibration: _omit, ...thresholdInfo } = thresholds;
  return {
    version: 1,
    category: input.category,
    generatedAt: new Date().toISOString(),
    run: input.run,
    imageSize: scores.imageSize,
    testImages: recs.length,
    thresholds: { ...thresholdInfo, scoreNorm: cal.scoreNorm },
    image,
    pixel,
    perDefectType: perDefectType(
      s,
      y,
      recs.map((r) => r.defectType),
      t,
    ),
    latency: scores.latency,
    training: input.training,
    targets: targetChecks({
      imageAuroc: image.auroc,
      f1: image.atThreshold.f1,
      meanLatencyMs: scores.latency.images > 0 ? scores.latency.meanMsPerImage : null,
      peakRssMb: input.training.peakRssMb,
    }),
    predictions,
    worstFalsePositives,
    worstFalseNegatives,
  };
}
