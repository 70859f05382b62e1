import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { preprocessStep } from '../data/preprocess-step';
import { thresholdStep } from '../eval/threshold-step';
import { validateStep } from '../eval/validate-step';
import { MODEL_JSON } from '../model/io';
import { PACKAGE_FILES, validateModelPackage } from '../package/package';
import {
  type JsonValue,
  localHooks,
  type ProgressDetails,
  type StepActivity,
  type StepContext,
  type StepResult,
} from '../steps/contracts';
import { artifact, finishStep } from '../steps/result';
import { UserError } from '../util/errors';
import { reportStep } from './report-step';

/**
 * `npm run evaluate`: the pipeline's preprocess -> validate -> threshold -> report chain, run in-process
 * on a trained model package and a dataset, writing the same files as the pipeline under `outDir`.
 * Thresholds are refitted on the validation split exactly as the threshold step does (same config and
 * seed give the same split); the package itself is never modified.
 */
export interface OfflineEvaluationOptions {
  /** A model package folder, or a pipeline run folder (`runs/<pipeline>/<run-id>`) holding one for the category. */
  model: string;
  dataRoot: string;
  /** Defaults to the package's category. */
  category?: string;
  outDir: string;
  batchSize?: number;
  onProgress?: (step: string, d: ProgressDetails) => void;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** Finds the model package a `--model` argument designates. */
export async function resolvePackageDir(model: string, category: string | undefined): Promise<string> {
  const dir = resolve(model);
  if (await exists(join(dir, PACKAGE_FILES.manifest))) return dir;
  if (!category)
    throw new UserError(
      'INVALID_ARGUMENT',
      `${dir} is not a model package; pass --category to pick one from a run folder`,
    );
  const catDir = join(dir, category);
  const steps = await readdir(catDir).catch(() => [] as string[]);
  for (const step of steps.sort()) {
    const candidate = join(catDir, step, 'package');
    if (await exists(join(candidate, PACKAGE_FILES.manifest))) return candidate;
  }
  throw new UserError(
    'INVALID_ARGUMENT',
    `${dir}: neither a model package (no ${PACKAGE_FILES.manifest}) nor a run folder with a package for category '${category}' (looked for ${catDir}/<step>/package)`,
  );
}

export async function evaluateOffline(opts: OfflineEvaluationOptions): Promise<StepResult> {
  const packageDir = await resolvePackageDir(opts.model, opts.category);
  const pkg = await validateModelPackage(packageDir, { requireCalibration: false });
  const category = opts.category ?? pkg.metadata.category;
  const runDir = resolve(opts.outDir);
  const results: Partial<Record<StepActivity, StepResult>> = {};
  const ctx = (activity: StepActivity, params: Record<string, JsonValue> = {}): StepContext => ({
    runDir,
    pipeline: 'evaluate',
    runId: pkg.metadata.runId,
    category,
    dataRoot: resolve(opts.dataRoot),
    step: activity,
    stepDir: join(runDir, category, activity),
    config: pkg.metadata.config,
    params,
    inputs: { ...results },
  });
  const hooks = (step: string) => localHooks((d) => opts.onProgress?.(step, d));

  results.preprocess = await preprocessStep(ctx('preprocess'), hooks('preprocess'));
  // The package's model stands in for the train step's best model; its training facts come along.
  const train = ctx('train');
  results.train = await finishStep(
    train,
    'train',
    new Date(),
    [await artifact(train, 'best_model', join(packageDir, MODEL_JSON))],
    pkg.metadata.training,
  );
  results.validate = await validateStep(
    ctx('validate', { batch_size: opts.batchSize ?? 8 }),
    hooks('validate'),
  );
  results.threshold = await thresholdStep(ctx('threshold'), hooks('threshold'));
  return reportStep(ctx('report'), hooks('report'));
}
