/**
 * The pipeline's `package` step: seals the servable model package in its own folder,
 * `<stepDir>/package`, from the checkpoint step's (uncalibrated) package, the threshold step's
 * calibration and, when a report step ran before it, the test metrics. Sealed once: nothing writes to
 * it afterwards, so a server reading it never sees it change, and a resumed run verifies it unchanged.
 */
import { dirname, join } from 'node:path';
import type { Calibration } from '../eval/calibration';
import { readJson } from '../report/read-json';
import type { JsonValue, StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { PACKAGE_FILES, PACKAGE_FORMAT_VERSION, sealPackage } from './package';

/** Folder name of a package inside its step's folder (serve discovers `<category>/<step>/package`). */
export const PACKAGE_DIR_NAME = 'package';

export const packageStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  hooks.progress({ stage: 'sealing the model package' });
  const fromDir = dirname(inputPath(ctx, 'checkpoint', 'package_manifest'));
  const calibration = await readJson<Calibration>(inputPath(ctx, 'threshold', 'calibration'));
  const report = ctx.inputs.report;
  // The report's headline numbers (its step summary) travel with the package, so `serve` can show
  // what the model is worth.
  const metrics: Record<string, JsonValue> | null = report ? { ...report.summary } : null;
  const packageDir = join(ctx.stepDir, PACKAGE_DIR_NAME);
  await sealPackage({ fromDir, packageDir, calibration, metrics });
  const manifest = await artifact(ctx, 'package_manifest', join(packageDir, PACKAGE_FILES.manifest));
  return finishStep(ctx, 'package', startedAt, [manifest], {
    packageDir: join(ctx.category, ctx.step, PACKAGE_DIR_NAME),
    formatVersion: PACKAGE_FORMAT_VERSION,
    withMetrics: metrics !== null,
  });
};
