import { join } from 'node:path';
import type { ThresholdConfig } from '../config/schema';
import type { StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { writeJsonAtomic } from '../util/atomic';
import type { Calibration } from './calibration';
import { readMaps } from './map-store';
import { readScoresFile, type ScoresFile } from './scores-file';
import { computeThresholds, pixelThreshold, scoreNormFor, type ThresholdSelection } from './thresholds';

/** thresholds.json: every strategy, the selection (with any fallback), the pixel threshold, the calibration. */
export interface ThresholdsFile extends ThresholdSelection {
  fittedOn: 'validation';
  pixelThreshold: number;
  pixelMethod: string;
  calibration: Calibration;
}

/** Fits thresholds on the validation scores/maps; no test data is read. */
export function fitThresholds(
  scores: ScoresFile,
  valMaps: Float32Array,
  threshold: ThresholdConfig,
): ThresholdsFile {
  const sel = computeThresholds(
    scores.val.map((r) => r.score),
    scores.val.map((r) => r.label),
    threshold,
  );
  const px = scores.imageSize * scores.imageSize;
  const goodIdx = scores.val.flatMap((r, i) => (r.label === 0 ? [i] : []));
  const goodPixels = new Float32Array(goodIdx.length * px);
  for (const [k, i] of goodIdx.entries()) goodPixels.set(valMaps.subarray(i * px, (i + 1) * px), k * px);
  const pxT = pixelThreshold(goodPixels, threshold.pixel_percentile);
  const calibration: Calibration = {
    imageThreshold: sel.imageThreshold,
    pixelThreshold: pxT,
    scoreNorm: scoreNormFor(
      goodIdx.map((i) => scores.val[i].score),
      sel.imageThreshold,
    ),
    strategy: sel.selected,
    anomalyMap: scores.anomalyMap,
    imageSize: scores.imageSize,
  };
  return {
    fittedOn: 'validation',
    ...sel,
    pixelThreshold: pxT,
    pixelMethod: `${threshold.pixel_percentile}th percentile of ${goodPixels.length} map values of ${goodIdx.length} good validation images`,
    calibration,
  };
}

/**
 * threshold: computes all strategies on the validation split, selects one (explicit fallback), writes
 * thresholds.json and calibration.json in its own folder (the package step seals them into the
 * servable package).
 */
export const thresholdStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  hooks.progress({ stage: 'fitting thresholds on validation data' });
  const scores = await readScoresFile(inputPath(ctx, 'validate', 'scores'));
  const { maps } = await readMaps(inputPath(ctx, 'validate', 'val_maps'));
  const fitted = fitThresholds(scores, maps, ctx.config.threshold);
  const thresholdsPath = join(ctx.stepDir, 'thresholds.json');
  await writeJsonAtomic(thresholdsPath, fitted);
  const calibrationPath = join(ctx.stepDir, 'calibration.json');
  await writeJsonAtomic(calibrationPath, fitted.calibration);
  return finishStep(
    ctx,
    'threshold',
    startedAt,
    [await artifact(ctx, 'thresholds', thresholdsPath), await artifact(ctx, 'calibration', calibrationPath)],
    {
      requested: fitted.requested,
      selected: fitted.selected,
      fallback: fitted.fallback
        ? `${fitted.fallback.from} -> ${fitted.fallback.to}: ${fitted.fallback.reason}`
        : null,
      imageThreshold: fitted.imageThreshold,
      pixelThreshold: fitted.pixelThreshold,
    },
  );
};
