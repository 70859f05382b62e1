/**
 * The pipeline's `checkpoint` step: turns the train step's best model into a model package
 * (`<stepDir>/package`), the unit that the threshold step calibrates and `npm run serve` loads.
 */
import { dirname, join } from 'node:path';
import { exportModelPackage, PACKAGE_FILES, PACKAGE_FORMAT_VERSION } from '../model/package';
import type { StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';

/** Folder name of the package inside the checkpoint step's folder (serve discovers `*\/checkpoint/package`). */
export const PACKAGE_DIR_NAME = 'package';

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
    training: ctx.inputs.train?.summary ?? {},
  });
  const manifest = await artifact(ctx, 'package_manifest', join(packageDir, PACKAGE_FILES.manifest));
  return finishStep(ctx, 'checkpoint', startedAt, [manifest], {
    packageDir: join(ctx.category, ctx.step, PACKAGE_DIR_NAME),
    formatVersion: PACKAGE_FORMAT_VERSION,
  });
};
