/**
 * Resolves a pipeline YAML + config/ + CLI options into the serialisable RunPlan the workflows run.
 * All file access and validation happen here, so workflow code only reads plain data.
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { CATEGORY_NAME_RE, extraLayers, loadConfigFiles, resolveTrainingConfig } from '../config/load';
import { DEFAULT_CONFIG_DIR, DEFAULT_DEMO_DATA_DIR, DEFAULT_RUNS_ROOT, displayPath } from '../config/paths';
import type { DeepPartial, TrainingConfig } from '../config/schema';
import { ensureDemoDataset } from '../data/demo';
import { listCategories } from '../data/mvtec';
import { listRemoteCategories } from '../store/dataset-mirror';
import { isStoreError } from '../store/errors';
import { isRemoteStoreUrl, parseS3Url } from '../store/open';
import { sha256 } from '../util/atomic';
import { UserError } from '../util/errors';
import { parseDuration } from './duration';
import { loadPipeline } from './load';
import {
  type CategoryPlan,
  type RetryPlan,
  type RunPlan,
  type SchedulePlan,
  type StepPlan,
  TASK_QUEUES,
} from './plan';
import { BUILTIN_STEP_DEFAULTS, NAME_RE, type PipelineSpec, type StepSpec } from './schema';

export interface BuildRunPlanOptions {
  /** A YAML path, or a bare name looked up in pipelines/. */
  pipelinePath: string;
  dataRoot?: string;
  categories?: string[] | 'all';
  overrides?: DeepPartial<TrainingConfig>;
  runId?: string;
  runsRoot?: string;
  configDir?: string;
  /** `--no-cache`: every step runs, none reuses an earlier run's outputs. */
  noCache?: boolean;
}

/**
 * `<runs root>/<pipeline>/<run id>`: a local folder, or `s3://bucket/prefix/<pipeline>/<run id>`
 * for a run kept in object storage (activities then work in a local mirror, lib/store/run-mirror).
 */
function runDirFor(runsRoot: string, spec: PipelineSpec, runId: string): string {
  if (!isRemoteStoreUrl(runsRoot)) return resolve(runsRoot, spec.name, runId);
  try {
    parseS3Url(runsRoot);
  } catch (err) {
    throw new UserError('INVALID_ARGUMENT', `--runs-root: ${(err as Error).message}`, { cause: err });
  }
  return `${runsRoot.replace(/\/+$/, '')}/${spec.name}/${runId}`;
}

/** `20261128-120501-ab12` (UTC): sorts by start time, unique enough across hosts. */
export function newRunId(now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const date = `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}`;
  const time = `${p(now.getUTCHours())}${p(now.getUTCMinutes())}${p(now.getUTCSeconds())}`;
  return `${date}-${time}-${randomBytes(2).toString('hex')}`;
}

const ms = (d: string) => parseDuration(d) as number; // validated by the schema already

function queueName(q: string): string {
  return q === 'cpu' || q === 'gpu' ? TASK_QUEUES[q] : q;
}

function stepPlan(step: StepSpec, spec: PipelineSpec): StepPlan {
  const d = spec.defaults;
  const gpu = step.resources?.gpu ?? 0;
  const retry = { ...BUILTIN_STEP_DEFAULTS.retry, ...d.retry, ...step.retry };
  const retryPlan: RetryPlan = {
    maximumAttempts: retry.maximum_attempts,
    initialIntervalMs: ms(retry.initial_interval),
    backoffCoefficient: retry.backoff,
    maximumIntervalMs: ms(retry.maximum_interval),
  };
  return {
    name: step.name,
    activity: step.activity,
    needs: [...step.needs],
    taskQueue: queueName(step.queue ?? (gpu >= 1 ? 'gpu' : (d.queue ?? BUILTIN_STEP_DEFAULTS.queue))),
    gpu,
    retry: retryPlan,
    startToCloseTimeoutMs: ms(
      step.start_to_close ?? d.start_to_close ?? BUILTIN_STEP_DEFAULTS.start_to_close,
    ),
    heartbeatTimeoutMs: ms(step.heartbeat ?? d.heartbeat ?? BUILTIN_STEP_DEFAULTS.heartbeat),
    params: step.params,
    cache: step.cache,
  };
}

function schedulePlan(spec: PipelineSpec): SchedulePlan | null {
  const s = spec.schedule;
  if (!s) return null;
  return {
    cron: typeof s.cron === 'string' ? [s.cron] : s.cron,
    overlap: s.overlap,
    catchupWindowMs: ms(s.catchup_window),
  };
}

async function resolveDataRoot(
  opts: BuildRunPlanOptions,
  spec: PipelineSpec,
  pipelinePath: string,
): Promise<string> {
  if (opts.dataRoot)
    return isRemoteStoreUrl(opts.dataRoot)
      ? checkDataUrl(opts.dataRoot, '--data-root')
      : assertDir(resolve(opts.dataRoot), '--data-root');
  if (spec.dataset.root && isRemoteStoreUrl(spec.dataset.root))
    return checkDataUrl(spec.dataset.root, `${displayPath(pipelinePath)}: dataset.root`);
  if (spec.dataset.root)
    return assertDir(
      resolve(dirname(pipelinePath), spec.dataset.root),
      `${displayPath(pipelinePath)}: dataset.root`,
    );
  return ensureDemoDataset(DEFAULT_DEMO_DATA_DIR);
}

/** A dataset in object storage: the URL is checked here, its categories listed below. */
function checkDataUrl(url: string, what: string): string {
  try {
    parseS3Url(url);
  } catch (err) {
    throw new UserError('INVALID_ARGUMENT', `${what}: ${(err as Error).message}`, { cause: err });
  }
  return url.replace(/\/+$/, '');
}

async function assertDir(path: string, what: string): Promise<string> {
  const ok = await stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!ok) {
    throw new UserError(
      'INVALID_DATASET',
      `${what}: dataset folder not found: ${path} (pass --data-root <folder> or set dataset.root)`,
    );
  }
  return path;
}

/** Checks requested names against the folders present; `all` means every category found. */
export async function resolveCategories(dataRoot: string, requested: string[] | 'all'): Promise<string[]> {
  const available = isRemoteStoreUrl(dataRoot)
    ? await listRemoteCategories(dataRoot).catch((err: unknown) => {
        throw isStoreError(err) && !err.retryable
          ? new UserError('INVALID_DATASET', `dataset ${dataRoot}: ${err.message}`, { cause: err })
          : err;
      })
    : await listCategories(dataRoot);
  if (requested === 'all') {
    if (available.length === 0) {
      throw new UserError(
        'INVALID_DATASET',
        `no categories in ${dataRoot}: expected folders like <category>/train/good`,
      );
    }
    return available;
  }
  for (const name of requested) {
    if (!CATEGORY_NAME_RE.test(name)) {
      throw new UserError(
        'UNKNOWN_CATEGORY',
        `invalid category name ${JSON.stringify(name)}: letters, digits, _ and - only (no paths)`,
      );
    }
    if (!available.includes(name)) {
      throw new UserError(
        'UNKNOWN_CATEGORY',
        `unknown category "${name}" in ${dataRoot} (available: ${available.join(', ') || 'none'})`,
        { details: { category: name, available } },
      );
    }
  }
  return [...new Set(requested)];
}

export async function buildRunPlan(opts: BuildRunPlanOptions): Promise<RunPlan> {
  const pipeline = await loadPipeline(opts.pipelinePath);
  const { spec } = pipeline;
  const configFiles = await loadConfigFiles(opts.configDir ?? DEFAULT_CONFIG_DIR);
  const layers = extraLayers(spec.training, pipeline.path, opts.overrides);

  const dataRoot = await resolveDataRoot(opts, spec, pipeline.path);
  const names = await resolveCategories(dataRoot, opts.categories ?? spec.dataset.categories);
  const categories: CategoryPlan[] = names.map((name) => ({
    name,
    config: resolveTrainingConfig(configFiles, name, layers),
  }));

  const runId = opts.runId ?? newRunId();
  if (!NAME_RE.test(runId)) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `invalid run id ${JSON.stringify(runId)}: letters, digits, _ and - only`,
    );
  }
  const hashInput = [
    `pipeline:${pipeline.text}`,
    ...configFiles.texts.map((t) => `config:${t.path.slice(configFiles.dir.length)}:${t.text}`),
    // CLI overrides change the run as much as the files do.
    `overrides:${JSON.stringify(opts.overrides ?? {})}`,
  ].join('\0');

  return {
    pipeline: spec.name,
    runId,
    runDir: runDirFor(opts.runsRoot ?? DEFAULT_RUNS_ROOT, spec, runId),
    dataRoot,
    concurrency: spec.concurrency,
    categories,
    steps: spec.steps.map((s) => ({ ...stepPlan(s, spec), cache: !opts.noCache && s.cache })),
    schedule: schedulePlan(spec),
    configHash: sha256(hashInput),
  };
}
