/**
 * One category's run: a small DAG interpreter over the plan's steps. A step starts as soon as all
 * of its `needs` have finished, so independent steps run in parallel; every step is one activity
 * (named after its StepActivity, which is what the Web UI shows) with the retry policy, timeouts and
 * task queue of its StepPlan. History stays small: a handful of events per step, because live
 * progress travels in activity heartbeats, never in workflow events.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  type ActivityOptions,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  getExternalWorkflowHandle,
  isCancellation,
  scheduleActivity,
  setCurrentDetails,
  setHandler,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { CategoryOutcome, CategoryStatus, StepFailure, StepState } from '../lib/pipeline/outcome';
import type { StepPlan } from '../lib/pipeline/plan';
import type { StepActivity, StepContext, StepResult } from '../lib/steps/contracts';
import { findGraphProblems, readySteps, upstreamClosure } from './dag';
import {
  type CategoryProgress,
  type CategoryWorkflowInput,
  categoryOutcomeSignal,
  categoryProgressQuery,
  SEARCH_ATTRIBUTES,
  type StepActivityOutput,
  type StepInvocation,
} from './definitions';

export async function categoryWorkflow(input: CategoryWorkflowInput): Promise<CategoryOutcome> {
  const { run, category, steps } = input;
  const problems = findGraphProblems(steps);
  if (problems.length > 0) {
    throw ApplicationFailure.create({
      type: 'INVALID_PIPELINE',
      message: `pipeline '${run.pipeline}': ${problems.join('; ')}`,
      nonRetryable: true,
    });
  }

  const startedAt = new Date().toISOString();
  const states: Record<string, StepState> = Object.fromEntries(
    steps.map((s) => [s.name, 'pending' as const]),
  );
  const results: Record<string, StepResult> = {};
  let status: CategoryStatus = 'running';
  let failure: StepFailure | undefined;
  const running = new Map<string, Promise<void>>();
  const upstream = upstreamClosure(steps);

  setHandler(
    categoryProgressQuery,
    (): CategoryProgress => ({
      category: category.name,
      status,
      steps: { ...states },
      runningSteps: [...running.keys()],
      failure,
    }),
  );

  let lastStage = '';
  const publishState = (): void => {
    const stage = status === 'running' ? [...running.keys()].join('+') || 'waiting' : status;
    // Only upsert on change: each upsert is a history event.
    if (stage !== lastStage) {
      upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.stage, value: stage }]);
      lastStage = stage;
    }
    setCurrentDetails(
      [
        `**${category.name}**: ${status}`,
        ...steps.map((s) => `- ${s.name} (${s.activity}): ${states[s.name]}`),
      ].join('\n'),
    );
  };

  const runStep = async (step: StepPlan): Promise<void> => {
    states[step.name] = 'running';
    const inputs: Partial<Record<StepActivity, StepResult>> = {};
    for (const name of upstream.get(step.name) ?? []) {
      const res = results[name];
      if (res) inputs[res.activity] = res;
    }
    const ctx: StepContext = {
      runDir: run.runDir,
      pipeline: run.pipeline,
      runId: run.runId,
      category: category.name,
      dataRoot: run.dataRoot,
      step: step.name,
      stepDir: `${run.runDir}/${category.name}/${step.name}`,
      config: category.config,
      params: step.params,
      inputs,
    };
    // A step's old result is only trustworthy if everything it was computed from was reused too.
    const reuseCompleted =
      input.reuseCompleted && (upstream.get(step.name) ?? []).every((n) => states[n] === 'reused');
    const invocation: StepInvocation = { ctx, reuseCompleted, cache: step.cache ?? false };
    try {
      const out = await scheduleActivity<StepActivityOutput>(
        step.activity,
        [invocation],
        activityOptions(step, category.name),
      );
      results[step.name] = out.result;
      states[step.name] = out.reused ? 'reused' : 'completed';
    } catch (err) {
      if (isCancellation(err)) {
        states[step.name] = 'cancelled';
        throw err;
      }
      states[step.name] = 'failed';
      failure ??= describeStepFailure(step.name, err);
    }
  };

  upsertSearchAttributes([
    { key: SEARCH_ATTRIBUTES.pipeline, value: run.pipeline },
    { key: SEARCH_ATTRIBUTES.runId, value: run.runId },
    { key: SEARCH_ATTRIBUTES.category, value: category.name },
  ]);
  publishState();

  try {
    for (;;) {
      // After a failure, start nothing new but let in-flight siblings finish: their results stay
      // reusable by `resume`.
      if (!failure) {
        for (const step of readySteps(steps, states)) {
          running.set(
            step.name,
            runStep(step).finally(() => running.delete(step.name)),
          );
        }
      }
      publishState();
      if (running.size === 0) break;
      await Promise.race(running.values());
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    // Cancelled: running activities got the cancellation too (WAIT_CANCELLATION_COMPLETED), so
    // waiting lets e.g. training write its checkpoint before the category reports back.
    await Promise.allSettled(running.values());
    for (const s of steps)
      if (states[s.name] === 'pending' || states[s.name] === 'running') states[s.name] = 'cancelled';
    status = 'cancelled';
    publishState();
    const { parent } = workflowInfo();
    if (parent) {
      const final = outcome();
      await CancellationScope.nonCancellable(() =>
        getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(categoryOutcomeSignal, final),
      );
    }
    throw new CancelledFailure(`category '${category.name}' was cancelled`);
  }

  for (const s of steps) if (states[s.name] === 'pending') states[s.name] = 'skipped';
  status = failure ? 'failed' : 'completed';
  publishState();
  if (failure) {
    throw ApplicationFailure.create({
      type: 'CategoryFailed',
      message: `category '${category.name}': step '${failure.step}' failed: ${failure.message}`,
      nonRetryable: true,
      details: [outcome()],
    });
  }
  return outcome();

  function outcome(): CategoryOutcome {
    return {
      category: category.name,
      status: status === 'failed' ? 'failed' : status === 'cancelled' ? 'cancelled' : 'completed',
      steps: { ...states },
      results: { ...results },
      failure,
      startedAt,
      finishedAt: new Date().toISOString(),
    };
  }
}

function activityOptions(step: StepPlan, category: string): ActivityOptions {
  return {
    taskQueue: step.taskQueue,
    startToCloseTimeout: step.startToCloseTimeoutMs,
    // 0 means "no heartbeat timeout" in the plan; Temporal wants it absent then.
    heartbeatTimeout: step.heartbeatTimeoutMs > 0 ? step.heartbeatTimeoutMs : undefined,
    retry: {
      maximumAttempts: step.retry.maximumAttempts,
      initialInterval: step.retry.initialIntervalMs,
      backoffCoefficient: step.retry.backoffCoefficient,
      maximumInterval: step.retry.maximumIntervalMs,
    },
    // Let a cancelled step stop cleanly (checkpoint, close files) before the workflow moves on.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    summary: `${category} / ${step.name}`,
  };
}

/** Turns an activity failure into the one-line reason the summary shows. */
function describeStepFailure(step: string, err: unknown): StepFailure {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    return {
      step,
      message: cause.message,
      // The activity adapter puts the UserError code in `type` and marks it non-retryable.
      code: cause.nonRetryable && cause.type ? cause.type : undefined,
      retryable: !cause.nonRetryable,
    };
  }
  if (cause instanceof TimeoutFailure) {
    return { step, message: `timed out (${cause.timeoutType}); no attempts left`, retryable: true };
  }
  return { step, message: err instanceof Error ? err.message : String(err), retryable: true };
}
