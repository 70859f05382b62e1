/** Flags of `npm run pipeline`: the plan (pipeline, categories, training overrides) and the embedded workers. */
import { availableParallelism } from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import { addTrainingOverrideOptions, trainingOverridesFromFlags } from '../../lib/config/cli-overrides';
import { DEFAULT_RUNS_ROOT, RUNS_ROOT_ENV } from '../../lib/config/paths';
import type { RunPlan } from '../../lib/pipeline/plan';
import { positiveInt } from '../../lib/util/cli-args';
import { UserError } from '../../lib/util/errors';
import type { WorkerSpec } from '../../temporal/session';

export const DEFAULT_PIPELINE = 'pipelines/quick.yaml';

function gpuList(value: string): number[] {
  if (!/^\d+(,\d+)*$/.test(value))
    throw new InvalidArgumentError(`expected GPU indices like 0,1; got '${value}'`);
  return value.split(',').map(Number);
}
export function isoDate(value: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new InvalidArgumentError(`expected an ISO date/time, got '${value}'`);
  return d;
}

export interface PlanFlags {
  pipeline: string;
  category?: string[];
  allCategories?: boolean;
  dataRoot?: string;
  runsRoot?: string;
  epochs?: number;
  batchSize?: number;
  imageSize?: number;
  lr?: number;
  seed?: number;
  /** training.device: auto | cpu | cuda | webgpu. */
  device?: 'auto' | 'cpu' | 'cuda' | 'webgpu';
  /** Repeatable `--set key=value` training overrides (see docs/CONFIG.md). */
  set?: string[];
  /** commander's `--no-cache`: false when given. */
  cache?: boolean;
}

export interface WorkerFlags {
  trainSlots?: number;
  gpus?: number[];
}

export function addPlanOptions(cmd: Command): Command {
  return addTrainingOverrideOptions(
    cmd
      .option('--pipeline <file>', 'pipeline YAML (or a name in pipelines/)', DEFAULT_PIPELINE)
      .option('--category <names...>', "categories to train (default: the pipeline's dataset.categories)")
      .option('--all-categories', 'every category found under the data root')
      .option(
        '--data-root <dir>',
        "dataset root in the MVTec AD layout (default: the pipeline's, else the demo dataset)",
      )
      .option(
        '--runs-root <dir>',
        `where run folders go: a folder, or s3://bucket/prefix (default: $${RUNS_ROOT_ENV}, else runs/)`,
        process.env[RUNS_ROOT_ENV] || DEFAULT_RUNS_ROOT,
      )
      .option(
        '--no-cache',
        'run every step, even where an earlier run with the same inputs (data, config, code) has its outputs',
      ),
  ).option(
    '--set <key=value>',
    'override any training setting, e.g. --set epochs=3 --set model.widths=[8,16] (repeatable; --epochs etc. win over --set)',
    (item: string, previous: string[] = []) => [...previous, item],
  );
}

export function addWorkerOptions(cmd: Command): Command {
  return cmd
    .option(
      '--train-slots <n>',
      'embedded mode: training worker processes (default: min(concurrency, cores))',
      positiveInt,
    )
    .option('--gpus <ids>', 'embedded mode: one training worker per GPU index', gpuList);
}

export async function planFromFlags(flags: PlanFlags & { runId?: string }): Promise<RunPlan> {
  if (flags.allCategories && flags.category?.length) {
    throw new UserError('INVALID_ARGUMENT', 'use either --all-categories or --category, not both');
  }
  const overrides = trainingOverridesFromFlags(flags);
  // Loaded on demand: it pulls in the dataset code, which commands like `status` do not need.
  const { buildRunPlan } = await import('../../lib/pipeline/build-plan');
  return buildRunPlan({
    pipelinePath: flags.pipeline,
    dataRoot: flags.dataRoot,
    categories: flags.allCategories ? 'all' : flags.category,
    overrides,
    runsRoot: flags.runsRoot,
    runId: flags.runId,
    noCache: flags.cache === false,
  });
}

export function workerSpec(flags: WorkerFlags, plan?: RunPlan): WorkerSpec {
  return {
    gpus: flags.gpus,
    // tfjs-wasm trains on one thread: one process per category trained at once, within the cores.
    trainSlots: flags.trainSlots ?? Math.max(1, Math.min(plan?.concurrency ?? 1, availableParallelism())),
  };
}
