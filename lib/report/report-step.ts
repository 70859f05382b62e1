import { dirname } from 'node:path';
import { readCachedSplit } from '../data/tensor-cache';
import { readMaps } from '../eval/map-store';
import { readScoresFile } from '../eval/scores-file';
import type { ThresholdsFile } from '../eval/threshold-step';
import type { StepContext, StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { buildCategoryReport, type CategoryReport, type ReportInput } from './category-report';
import { readJson } from './read-json';
import { trainingFacts } from './targets';
import { type ReportFiles, writeCategoryReport } from './write-report';

/** Gathers the report's inputs from the upstream steps' artifacts. */
export async function reportInputFromSteps(ctx: StepContext): Promise<ReportInput> {
  const scores = await readScoresFile(inputPath(ctx, 'validate', 'scores'));
  const thresholds = await readJson<ThresholdsFile>(inputPath(ctx, 'threshold', 'thresholds'));
  const { maps } = await readMaps(inputPath(ctx, 'validate', 'test_maps'));
  const test = await readCachedSplit(dirname(inputPath(ctx, 'preprocess', 'manifest')), 'test');
  return {
    category: ctx.category,
    run: { pipeline: ctx.pipeline, runId: ctx.runId },
    scores,
    thresholds,
    testMaps: maps,
    test,
    training: trainingFacts(ctx.inputs.train?.summary),
  };
}

/** The headline numbers, for the step summary and the package's metrics.json. */
export function headline(r: CategoryReport): Record<string, number | string | null> {
  return {
    imageAuroc: r.image.auroc.value,
    imageAp: r.image.ap.value,
    f1: r.image.atThreshold.f1.value,
    f1Max: r.image.f1Max.f1.value,
    pixelAuroc: r.pixel.auroc.value,
    pixelAp: r.pixel.ap.value,
    aupro: r.pixel.aupro.value,
    threshold: r.thresholds.imageThreshold,
    strategy: r.thresholds.selected,
    meanMsPerImage: r.latency.meanMsPerImage,
    p95MsPerImage: r.latency.p95MsPerImage,
    backend: r.latency.backend,
  };
}

/** report: test metrics and the per-category report (md, self-contained html, json, predictions csv). */
export const reportStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  hooks.progress({ stage: 'computing test metrics' });
  const input = await reportInputFromSteps(ctx);
  const report = buildCategoryReport(input);
  hooks.progress({ stage: 'rendering report' });
  const files: ReportFiles = await writeCategoryReport(ctx.stepDir, report, input);
  return finishStep(
    ctx,
    'report',
    startedAt,
    [
      await artifact(ctx, 'report_md', files.reportMd),
      await artifact(ctx, 'report_html', files.reportHtml),
      await artifact(ctx, 'report_json', files.reportJson),
      await artifact(ctx, 'predictions_csv', files.predictionsCsv),
    ],
    headline(report),
  );
};
