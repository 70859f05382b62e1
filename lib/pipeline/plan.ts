/**
 * The resolved, serialisable plan of one pipeline run: what the client hands the pipeline workflow.
 * Produced from `pipelines/<name>.yaml` + `config/` + CLI flags by `buildRunPlan` (lib/pipeline).
 * Durations are milliseconds so that workflow code needs no parsing.
 */
import type { TrainingConfig } from '../config/schema';
import type { JsonValue, StepActivity } from '../steps/contracts';

export const TASK_QUEUES = { cpu: 'anomaly-spotter-cpu', gpu: 'anomaly-spotter-gpu' } as const;

export interface RetryPlan {
  maximumAttempts: number;
  initialIntervalMs: number;
  backoffCoefficient: number;
  maximumIntervalMs: number;
}

export interface StepPlan {
  name: string;
  activity: StepActivity;
  needs: string[];
  /** Resolved Temporal task queue (TASK_QUEUES.gpu when the step asks for `gpu: 1`, unless `queue` is set). */
  taskQueue: string;
  gpu: number;
  retry: RetryPlan;
  startToCloseTimeoutMs: number;
  heartbeatTimeoutMs: number;
  params: Record<string, JsonValue>;
  /**
   * Reuse this step's outputs from an earlier run whose inputs hash the same (lib/steps/step-cache):
   * the step's `cache:` (default true), false for every step under `--no-cache`.
   */
  cache?: boolean;
}

export interface CategoryPlan {
  name: string;
  /** Fully merged: defaults < config/training.yaml < config/categories.yaml < pipeline `training:` < CLI. */
  config: TrainingConfig;
}

export interface SchedulePlan {
  cron: string[];
  overlap: 'skip' | 'buffer_one' | 'buffer_all' | 'cancel_other' | 'terminate_other' | 'allow_all';
  catchupWindowMs: number;
}

export interface RunPlan {
  pipeline: string;
  runId: string;
  /** Absolute `runs/<pipeline>/<run-id>`. */
  runDir: string;
  /** Absolute dataset root (MVTec AD layout). */
  dataRoot: string;
  /** Max categories trained at once. */
  concurrency: number;
  categories: CategoryPlan[];
  steps: StepPlan[];
  schedule: SchedulePlan | null;
  /** sha256 of the pipeline YAML + config files that produced this plan. */
  configHash: string;
}
