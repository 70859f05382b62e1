/**
 * Names and shapes shared by the workflows and their callers (client, tests): inputs, results,
 * queries, updates and search attributes. Imports only `@temporalio/workflow` (plus
 * `@temporalio/common` for search-attribute keys, which is deterministic) and types, so both the
 * workflow sandbox and Node code can use it.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CategoryOutcome, CategoryStatus, StepState, SummaryResult } from '../lib/pipeline/outcome';
import type { CategoryPlan, RunPlan, StepPlan } from '../lib/pipeline/plan';
import type { StepContext, StepResult } from '../lib/steps/contracts';

/** The run-wide part of a plan that every category needs. */
export interface RunRef {
  pipeline: string;
  runId: string;
  runDir: string;
  dataRoot: string;
}

export interface PipelineWorkflowInput {
  plan: RunPlan;
  /**
   * Reuse steps whose result.json exists and whose artifacts still hash the same (resume of a
   * failed run). Steps are re-checked on disk by the activity, not trusted from history.
   */
  reuseCompleted?: boolean;
  /**
   * Set for schedule-started runs: the run id is derived from the workflow id (which the schedule
   * suffixes with the fire time), so every fire writes to its own run directory.
   */
  runIdFromWorkflowId?: boolean;
}

export interface CategoryWorkflowInput {
  run: RunRef;
  category: CategoryPlan;
  steps: StepPlan[];
  reuseCompleted: boolean;
}

/** What each step activity receives. */
export interface StepInvocation {
  ctx: StepContext;
  reuseCompleted: boolean;
  /** Reuse a completed step of an earlier run with the same inputs (lib/steps/step-cache); absent: no. */
  cache?: boolean;
}

export interface StepActivityOutput {
  result: StepResult;
  /** True when an existing, verified result.json was returned instead of running the step. */
  reused: boolean;
  /** Set when the result is an earlier run's (step cache): that run's folder, relative to the runs root. */
  cachedFrom?: string;
}

export type PipelineStatus = 'running' | 'summarizing' | 'completed' | 'failed' | 'cancelled';

export interface PipelineSummary {
  pipeline: string;
  runId: string;
  runDir: string;
  /** `failed` when at least one category failed or was cancelled. */
  status: Exclude<PipelineStatus, 'running' | 'summarizing'>;
  categories: CategoryOutcome[];
  /** Output of the cross-category summary step; absent when it failed (see summaryError). */
  summary?: SummaryResult;
  summaryError?: string;
  startedAt: string;
  finishedAt: string;
}

export interface CategoryProgress {
  category: string;
  status: CategoryStatus;
  steps: Record<string, StepState>;
  runningSteps: string[];
  failure?: CategoryOutcome['failure'];
}

export interface PipelineProgress {
  pipeline: string;
  runId: string;
  runDir: string;
  status: PipelineStatus;
  /** Category name -> status; details of running categories come from their own `progress` query. */
  categories: Record<string, CategoryStatus>;
  /** Workflow id of each started category workflow. */
  childWorkflowIds: Record<string, string>;
}

export const pipelineProgressQuery = defineQuery<PipelineProgress>('progress');
export const categoryProgressQuery = defineQuery<CategoryProgress>('progress');

export interface CancelCategoryResult {
  category: string;
  /** Status before the cancellation request. */
  previousStatus: CategoryStatus;
}
/** Cancels one category (running or not yet started); the others continue. Rejected for unknown names. */
export const cancelCategoryUpdate = defineUpdate<CancelCategoryResult, [string]>('cancelCategory');

/**
 * Sent by a category workflow to its parent just before it reports cancellation, because a
 * cancelled workflow cannot return a result (Temporal drops cancellation details).
 */
export const categoryOutcomeSignal = defineSignal<[CategoryOutcome]>('categoryOutcome');

/** Custom search attributes (Keyword); registered by the dev server launcher or `ensureSearchAttributes`. */
export const SEARCH_ATTRIBUTES = {
  pipeline: defineSearchAttributeKey('AnomalyPipeline', SearchAttributeType.KEYWORD),
  runId: defineSearchAttributeKey('AnomalyRunId', SearchAttributeType.KEYWORD),
  category: defineSearchAttributeKey('AnomalyCategory', SearchAttributeType.KEYWORD),
  stage: defineSearchAttributeKey('AnomalyStage', SearchAttributeType.KEYWORD),
} as const;

export const WORKFLOW_ID_PREFIX = 'anomaly-pipeline-';

export function pipelineWorkflowId(runId: string): string {
  return `${WORKFLOW_ID_PREFIX}${runId}`;
}

export function categoryWorkflowId(runId: string, category: string): string {
  return `${WORKFLOW_ID_PREFIX}${runId}/${category}`;
}

/**
 * Schedules suffix the action's workflow id with the fire time; that suffix becomes the run id
 * (and run directory) of a scheduled run. Pure, so the client derives the same for `resume`.
 */
export function planForScheduledRun(plan: RunPlan, workflowId: string): RunPlan {
  const raw = workflowId.startsWith(WORKFLOW_ID_PREFIX)
    ? workflowId.slice(WORKFLOW_ID_PREFIX.length)
    : workflowId;
  // Run ids are letters, digits, _ and - (the fire time contains ':').
  const runId = raw.replace(/[^A-Za-z0-9_-]/g, '-');
  const base = plan.runDir.endsWith(`/${plan.runId}`)
    ? plan.runDir.slice(0, -plan.runId.length - 1)
    : plan.runDir;
  return { ...plan, runId, runDir: `${base}/${runId}` };
}
