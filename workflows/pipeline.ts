/**
 * One pipeline run: fans out a `categoryWorkflow` child per category (at most `plan.concurrency` at
 * once), isolates failures (a failed category never stops the others), supports cancelling single
 * categories, and ends with the cross-category summary activity. History grows by a few events per
 * category, which stays far below Temporal's limits for any realistic number of categories.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ChildWorkflowFailure,
  executeChild,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { CategoryOutcome, CategoryStatus, SummaryResult } from '../lib/pipeline/outcome';
import type { CategoryPlan } from '../lib/pipeline/plan';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { categoryWorkflow } from './category';
import {
  type CancelCategoryResult,
  type CategoryWorkflowInput,
  cancelCategoryUpdate,
  categoryOutcomeSignal,
  categoryWorkflowId,
  type PipelineProgress,
  type PipelineStatus,
  type PipelineSummary,
  type PipelineWorkflowInput,
  pipelineProgressQuery,
  planForScheduledRun,
  SEARCH_ATTRIBUTES,
} from './definitions';

/** The activity the worker registers under the name `summary` (see activities/). */
export interface SummaryActivities {
  summary(runDir: string, outcomes: CategoryOutcome[]): Promise<SummaryResult>;
}

const { summary: summarizeRun } = proxyActivities<SummaryActivities>({
  taskQueue: TASK_QUEUES.cpu,
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 3, initialInterval: '2 seconds' },
  summary: 'cross-category summary',
});

export async function pipelineWorkflow(input: PipelineWorkflowInput): Promise<PipelineSummary> {
  const plan = input.runIdFromWorkflowId
    ? planForScheduledRun(input.plan, workflowInfo().workflowId)
    : input.plan;
  const startedAt = new Date().toISOString();
  const root = CancellationScope.current();
  let status: PipelineStatus = 'running';
  const statuses: Record<string, CategoryStatus> = Object.fromEntries(
    plan.categories.map((c) => [c.name, 'pending' as const]),
  );
  const childIds: Record<string, string> = {};
  const scopes = new Map<string, CancellationScope>();
  const cancelRequested = new Set<string>();
  const outcomes = new Map<string, CategoryOutcome>();

  setHandler(
    pipelineProgressQuery,
    (): PipelineProgress => ({
      pipeline: plan.pipeline,
      runId: plan.runId,
      runDir: plan.runDir,
      status,
      categories: { ...statuses },
      childWorkflowIds: { ...childIds },
    }),
  );
  setHandler(
    cancelCategoryUpdate,
    (name: string): CancelCategoryResult => {
      const previousStatus = statuses[name];
      cancelRequested.add(name);
      // Not started yet: the scheduling loop skips it. Running: cancel its child workflow.
      scopes.get(name)?.cancel();
      return { category: name, previousStatus };
    },
    {
      validator: (name: string): void => {
        if (!(name in statuses))
          throw new Error(`unknown category '${name}' (run has: ${Object.keys(statuses).join(', ')})`);
      },
    },
  );

  // Cancelled children report what they had finished this way (see categoryOutcomeSignal).
  const reportedOutcomes = new Map<string, CategoryOutcome>();
  setHandler(categoryOutcomeSignal, (outcome: CategoryOutcome) => {
    reportedOutcomes.set(outcome.category, outcome);
  });

  upsertSearchAttributes([
    { key: SEARCH_ATTRIBUTES.pipeline, value: plan.pipeline },
    { key: SEARCH_ATTRIBUTES.runId, value: plan.runId },
    { key: SEARCH_ATTRIBUTES.stage, value: 'running' },
  ]);

  const publish = (): void => {
    const counts = Object.values(statuses).reduce<Record<string, number>>((acc, s) => {
      acc[s] = (acc[s] ?? 0) + 1;
      return acc;
    }, {});
    setCurrentDetails(
      [
        `**${plan.pipeline}** run \`${plan.runId}\`: ${status}`,
        Object.entries(counts)
          .map(([s, n]) => `${n} ${s}`)
          .join(', '),
        `run dir: \`${plan.runDir}\``,
      ].join('\n\n'),
    );
  };

  const runCategory = async (category: CategoryPlan): Promise<void> => {
    const workflowId = categoryWorkflowId(plan.runId, category.name);
    const childInput: CategoryWorkflowInput = {
      run: { pipeline: plan.pipeline, runId: plan.runId, runDir: plan.runDir, dataRoot: plan.dataRoot },
      category,
      steps: plan.steps,
      reuseCompleted: input.reuseCompleted ?? false,
    };
    const scope = new CancellationScope();
    scopes.set(category.name, scope);
    statuses[category.name] = 'running';
    childIds[category.name] = workflowId;
    publish();
    try {
      const outcome = await scope.run(() =>
        executeChild(categoryWorkflow, {
          workflowId,
          args: [childInput],
          staticSummary: `${plan.pipeline} / ${category.name}: ${plan.steps.map((s) => s.name).join(' → ')}`,
          staticDetails: `Run \`${plan.runId}\`, category **${category.name}**, artifacts under \`${plan.runDir}/${category.name}\`.`,
        }),
      );
      outcomes.set(category.name, outcome);
    } catch (err) {
      outcomes.set(
        category.name,
        reportedOutcomes.get(category.name) ?? outcomeFromChildFailure(category.name, err),
      );
    } finally {
      scopes.delete(category.name);
      statuses[category.name] = outcomes.get(category.name)?.status ?? 'failed';
      publish();
    }
  };

  const queue = [...plan.categories];
  const running = new Set<Promise<void>>();
  while (queue.length > 0 || running.size > 0) {
    while (running.size < Math.max(1, plan.concurrency) && queue.length > 0) {
      const category = queue.shift()!;
      if (cancelRequested.has(category.name) || root.consideredCancelled) {
        outcomes.set(category.name, notStartedOutcome(category.name));
        statuses[category.name] = 'cancelled';
        continue;
      }
      const p: Promise<void> = runCategory(category).finally(() => running.delete(p));
      running.add(p);
    }
    if (running.size > 0) await Promise.race(running);
  }

  const categories = plan.categories.map((c) => outcomes.get(c.name) ?? notStartedOutcome(c.name));
  const allOk = categories.every((c) => c.status === 'completed');
  const result: PipelineSummary = {
    pipeline: plan.pipeline,
    runId: plan.runId,
    runDir: plan.runDir,
    status: allOk ? 'completed' : 'failed',
    categories,
    startedAt,
    finishedAt: startedAt,
  };
  if (root.consideredCancelled) {
    status = 'cancelled';
    publish();
    throw new CancelledFailure(`pipeline run '${plan.runId}' was cancelled`, [result]);
  }

  status = 'summarizing';
  upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.stage, value: 'summary' }]);
  publish();
  try {
    result.summary = await summarizeRun(plan.runDir, categories);
  } catch (err) {
    if (isCancellation(err)) throw err;
    // A broken summary must not hide the per-category results the run did produce.
    result.summaryError =
      err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    log.warn('summary step failed', { error: result.summaryError });
  }
  status = result.status;
  result.finishedAt = new Date().toISOString();
  upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.stage, value: result.status }]);
  publish();
  return result;
}

function notStartedOutcome(category: string): CategoryOutcome {
  const now = new Date().toISOString();
  return { category, status: 'cancelled', steps: {}, results: {}, startedAt: now, finishedAt: now };
}

/** The child throws with its CategoryOutcome attached as failure details; recover it. */
function outcomeFromChildFailure(category: string, err: unknown): CategoryOutcome {
  const cause = err instanceof ChildWorkflowFailure ? err.cause : err;
  const attached = cause instanceof ApplicationFailure ? cause.details?.[0] : undefined;
  if (isCategoryOutcome(attached)) return attached;
  const now = new Date().toISOString();
  const cancelled = isCancellation(err);
  return {
    category,
    status: cancelled ? 'cancelled' : 'failed',
    steps: {},
    results: {},
    failure: cancelled
      ? undefined
      : {
          step: '(workflow)',
          message: cause instanceof Error ? cause.message : String(cause),
          retryable: false,
        },
    startedAt: now,
    finishedAt: now,
  };
}

function isCategoryOutcome(value: unknown): value is CategoryOutcome {
  return (
    typeof value === 'object' &&
    value !== null &&
    'category' in value &&
    'status' in value &&
    'steps' in value
  );
}
