/**
 * The `promote` step (champion/challenger after a retrain): scores this run's sealed package (the
 * challenger) and the category's current champion (lib/package/champion) on this run's held-back
 * split (`<category>/holdout/`, seen by no other step) when the dataset has one, else its test split, and
 * moves the champion pointer to the challenger only when it is not worse than `params.tolerance`
 * (default 0.01) in image AUROC. Both sets of metrics and the decision go to `<stepDir>/promotion.json`
 * and the step summary. A champion whose package no longer loads, or that takes another image size, is
 * compared on the metrics it was promoted on (said in the reason). Never served from the step cache:
 * its outcome depends on the pointer, not only on its inputs.
 */
import { dirname, join } from 'node:path';
import { readCachedSplit, readTensorCacheManifest } from '../data/tensor-cache';
import { auroc, rankedCounts } from '../eval/metrics';
import { pixelMetrics } from '../eval/pixel-metrics';
import { createScoringEngine } from '../eval/scoring-engine';
import type { JsonValue, StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import {
  type ChampionMetrics,
  type ChampionPointer,
  championPath,
  promotionDecision,
  readChampion,
  runsRootOf,
  writeChampion,
} from './champion';
import { type LoadedPackage, loadModelPackage } from './package';

async function metricsOn(
  pkg: LoadedPackage,
  test: Awaited<ReturnType<typeof readCachedSplit>>,
): Promise<ChampionMetrics> {
  const cfg = pkg.metadata.config.anomaly_map;
  const engine = await createScoringEngine('auto', [{ model: pkg.model, anomalyMap: cfg }], {
    device: pkg.metadata.config.device,
  });
  try {
    const x = Float32Array.from(test.images, (v) => v / 255);
    const out = await engine.score(pkg.model, x, test.count, test.size, cfg, 8);
    const labels = test.records.map((r) => r.label);
    const image = auroc(rankedCounts(Array.from(out.scores), labels)).value;
    const pixel =
      test.masks && labels.some((l) => l === 1)
        ? pixelMetrics(out.maps, test.masks, test.count, test.size, test.size).auroc.value
        : null;
    return { imageAuroc: image, pixelAuroc: pixel, images: test.count };
  } finally {
    await engine.release();
  }
}

const json = (m: ChampionMetrics | null): JsonValue => (m ? { ...m } : null);

export const promoteStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  const tolerance = ctx.params.tolerance ?? 0.01;
  if (typeof tolerance !== 'number' || tolerance < 0)
    throw new UserError(
      'INVALID_CONFIG',
      `step '${ctx.step}': params.tolerance must be a number >= 0, got ${JSON.stringify(tolerance)}`,
    );
  const packageDir = dirname(inputPath(ctx, 'package', 'package_manifest'));
  const preprocessDir = dirname(inputPath(ctx, 'preprocess', 'manifest'));
  // Held-back labelled images (when the dataset has them) decide: no step has seen them. Otherwise
  // the test split, which the thresholds were not fitted on either.
  const manifest = await readTensorCacheManifest(preprocessDir);
  const comparedOn = manifest.splits.holdout ? 'holdout' : 'test';
  const test = await readCachedSplit(preprocessDir, comparedOn);
  hooks.progress({ stage: 'scoring the challenger' });
  const challengerPkg = await loadModelPackage(packageDir, { requireCalibration: true });
  let challenger: ChampionMetrics;
  try {
    challenger = await metricsOn(challengerPkg, test);
  } finally {
    challengerPkg.model.dispose();
  }
  const pointerPath = championPath(runsRootOf(ctx.runDir), ctx.pipeline, ctx.category);
  const current = await readChampion(pointerPath);
  let champion: ChampionMetrics | null = null;
  let championNote = '';
  if (current && current.packageDir === packageDir) {
    champion = challenger; // a retried attempt that already promoted: the same model
  } else if (current) {
    hooks.progress({ stage: 'scoring the champion' });
    try {
      const pkg = await loadModelPackage(current.packageDir, { requireCalibration: true });
      try {
        if (pkg.preprocess.imageSize !== test.size) {
          champion = current.metrics;
          championNote = ` (champion takes ${pkg.preprocess.imageSize} px, not ${test.size}: compared on the metrics it was promoted on)`;
        } else champion = await metricsOn(pkg, test);
      } finally {
        pkg.model.dispose();
      }
    } catch (err) {
      champion = current.metrics;
      championNote = ` (champion package unusable: ${(err as Error).message.split('\n')[0]}; compared on the metrics it was promoted on)`;
    }
  }
  const decision = promotionDecision(challenger, champion, tolerance);
  const reason = decision.reason + championNote;
  if (decision.promote && current?.packageDir !== packageDir) {
    const next: ChampionPointer = {
      pipeline: ctx.pipeline,
      category: ctx.category,
      packageDir,
      runId: ctx.runId,
      metrics: challenger,
      promotedAt: new Date().toISOString(),
      reason,
      previous: current,
    };
    await writeChampion(pointerPath, next);
  }
  const summary: Record<string, JsonValue> = {
    promoted: decision.promote,
    reason: `${reason}, on the ${comparedOn} split (${test.count} images)`,
    comparedOn,
    tolerance,
    challenger: json(challenger),
    champion: json(champion),
    championRun: current?.runId ?? null,
    pointer: pointerPath,
  };
  const decisionPath = join(ctx.stepDir, 'promotion.json');
  await writeJsonAtomic(decisionPath, summary);
  hooks.progress({ stage: 'promote', message: decision.promote ? 'promoted' : 'kept the champion' });
  return finishStep(ctx, 'promote', startedAt, [await artifact(ctx, 'promotion', decisionPath)], summary);
};
