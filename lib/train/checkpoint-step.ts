/**
 * The pipeline's `checkpoint` step: turns the train step's best model into a sealed, uncalibrated model
 * package (`<stepDir>/package`); the package step adds the calibration in a servable copy of its own.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { exportModelPackage, PACKAGE_FILES, PACKAGE_FORMAT_VERSION } from '../package/package';
import { PACKAGE_DIR_NAME } from '../package/package-step';
import type { JsonValue, StepContext, StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';

/**
 * Training facts for metadata.json: the train step's summary, enriched with its `metadata` artifact
 * (backend details, loss weights, image counts) when it wrote one.
 */
async function trainingMetadata(ctx: StepContext): Promise<Record<string, JsonValue>> {
  const train = ctx.inputs.train;
  const summary = train?.summary ?? {};
  if (!train?.outputs.some((o) => o.name === 'metadata')) return summary;
  const path = inputPath(ctx, 'train', 'metadata');
  const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return summary;
  return { ...summary, ...(parsed as Record<string, JsonValue>) };
}

export const checkpointStep: StepFunction = async (ctx) => {
  const startedAt = new Date();
  const bestModelJson = inputPath(ctx, 'train', 'best_model');
  const packageDir = join(ctx.stepDir, PACKAGE_DIR_NAME);
  await exportModelPackage({
    modelDir: dirname(bestModelJson),
    packageDir,
    category: ctx.category,
    pipeline: ctx.pipeline,
    runId: ctx.runId,
    config: ctx.config,
    training: await trainingMetadata(ctx),
  });
  const manifest = await artifact(ctx, 'package_manifest', join(packageDir, PACKAGE_FILES.manifest));
  return finishStep(ctx, 'checkpoint', startedAt, [manifest], {
    packageDir: join(ctx.category, ctx.step, PACKAGE_DIR_NAME),
    formatVersion: PACKAGE_FORMAT_VERSION,
  });
};
