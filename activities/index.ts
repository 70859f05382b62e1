/**
 * Thin adapters from Temporal activities to the domain's step functions. One activity per
 * StepActivity name (so the Web UI shows `train`, `validate`, ...) plus `summary`. The adapter:
 * builds StepHooks (progress -> throttled heartbeat, cancellation -> AbortSignal, previous
 * heartbeat -> resume hint), logs every attempt under the step directory, reuses verified results
 * on resume, and maps UserError to a non-retryable failure carrying the error code.
 */
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { type PulledChampion, pullChampion, pushChampion } from '../lib/package/champion-sync';
import type { CategoryOutcome, SummaryFunction, SummaryResult } from '../lib/pipeline/outcome';
import { SUMMARY_DIR } from '../lib/report/summary';
import {
  type JsonValue,
  STEP_ACTIVITIES,
  type StepActivity,
  type StepFunction,
  type StepHooks,
} from '../lib/steps/contracts';
import { recordCachedStep, reuseCachedStep, stepCacheKey } from '../lib/steps/step-cache';
import { syncDatasetCategory } from '../lib/store/dataset-mirror';
import { isStoreError } from '../lib/store/errors';
import { isRemoteStoreUrl } from '../lib/store/open';
import { defaultWorkDir, isRemoteRunDir, RunMirror } from '../lib/store/run-mirror';
import { holdMirror, pruneWorkDir } from '../lib/store/work-dir';
import { describeError, isUserError } from '../lib/util/errors';
import type { StepActivityOutput, StepInvocation } from '../workflows/definitions';
import { AttemptLog } from './attempt-log';
import { asProgressDetails, ProgressHeartbeat } from './heartbeat';
import { loadVerifiedResult } from './reuse';

export type StepRegistry = Record<StepActivity, StepFunction>;

export interface CreateActivitiesOptions {
  /** Cross-category summary; without one, `summary` returns an empty result. */
  summary?: SummaryFunction;
  /** Minimum gap between progress heartbeats (default 1000 ms). */
  progressIntervalMs?: number;
}

export type StepActivityFunction = (invocation: StepInvocation) => Promise<StepActivityOutput>;

export type Activities = Record<StepActivity, StepActivityFunction> & {
  summary(runDir: string, outcomes: CategoryOutcome[]): Promise<SummaryResult>;
};

export function createActivities(steps: StepRegistry, opts: CreateActivitiesOptions = {}): Activities {
  const stepActivities = Object.fromEntries(
    STEP_ACTIVITIES.map((name) => [name, stepActivity(name, steps[name], opts)]),
  ) as Record<StepActivity, StepActivityFunction>;
  return {
    ...stepActivities,
    async summary(runDir, outcomes) {
      if (!opts.summary) return { outputs: [], summary: {} };
      const mirror = isRemoteRunDir(runDir) ? RunMirror.open(runDir) : null;
      const release = mirror ? await holdMirror(mirror.localRunDir) : null;
      try {
        if (!mirror) return await opts.summary(runDir, outcomes);
        // The summary reads each category's report: fetch those, write locally, publish.
        await mirror.pullInputs(
          outcomes.flatMap((o) => Object.values(o.results).filter((r) => r.activity === 'report')),
        );
        const result = await opts.summary(mirror.localRunDir, outcomes);
        await mirror.pushFolder(SUMMARY_DIR);
        return result;
      } catch (err) {
        throw toActivityFailure(err);
      } finally {
        await mirror?.close();
        await release?.();
      }
    },
  };
}

function stepActivity(
  activity: StepActivity,
  fn: StepFunction,
  opts: CreateActivitiesOptions,
): StepActivityFunction {
  const run = async ({ ctx: given, reuseCompleted, cache }: StepInvocation): Promise<StepActivityOutput> => {
    // A run in a store (claim check): the step works in this host's mirror of the run folder.
    const mirror = isRemoteRunDir(given.runDir) ? RunMirror.open(given.runDir) : null;
    let ctx = mirror ? mirror.localize(given) : given;
    // Mirrors this activity works in; never pruned while held (lib/store/work-dir).
    const held: (() => Promise<void>)[] = [];
    if (mirror) held.push(await holdMirror(mirror.localRunDir));
    const context = Context.current();
    const { info } = context;
    const log = await AttemptLog.open(ctx.stepDir, info.attempt, {
      pipeline: ctx.pipeline,
      runId: ctx.runId,
      category: ctx.category,
      step: ctx.step,
      activity,
      taskQueue: info.taskQueue,
      workflowId: info.workflowExecution?.workflowId,
    });
    const fields = { category: ctx.category, step: ctx.step, attempt: info.attempt };
    try {
      if (reuseCompleted) {
        const verified = mirror ? await mirror.loadPublishedResult(ctx) : await loadVerifiedResult(ctx);
        if ('result' in verified) {
          await log.write('info', 'reused existing result', { outputs: verified.result.outputs.length });
          context.log.info('step reused', fields);
          return { result: verified.result, reused: true };
        }
        await log.write('info', 'cannot reuse previous result; running step', { reason: verified.reason });
      }
      // A dataset in a bucket: preprocess (its only reader) works on this host's synced copy.
      if (activity === 'preprocess' && isRemoteStoreUrl(ctx.dataRoot)) {
        const synced = await syncDatasetCategory(ctx.dataRoot, ctx.category, {
          onMirror: async (dir) => void held.push(await holdMirror(dir)),
        });
        await log.write('info', 'synced the dataset from the store', { ...synced, url: ctx.dataRoot });
        ctx = { ...ctx, dataRoot: synced.root };
      }
      // Computed before the step runs: its inputs, not its outputs, make the key.
      // promote depends on the champion pointer, not only on its inputs: never cached.
      // A run in a store keeps its index beside the runs in the bucket (RunMirror).
      const cacheKey = cache && activity !== 'promote' ? await stepCacheKey(ctx, activity) : null;
      if (cacheKey) {
        const hit = mirror
          ? await mirror.reuseCachedStep(ctx, cacheKey)
          : await reuseCachedStep(ctx, cacheKey);
        if ('result' in hit) {
          const { result } = hit;
          const cachedFrom = String(result.summary.cachedFrom);
          await log.write('info', 'cached from an earlier run with the same inputs', {
            cachedFrom,
            key: cacheKey,
          });
          context.log.info('step cached', { ...fields, cachedFrom });
          return { result, reused: true, cachedFrom };
        }
        await log.write('info', 'not cached; running step', { reason: hit.reason, key: cacheKey });
      }

      const previousProgress = asProgressDetails(info.heartbeatDetails);
      const hb = info.heartbeatTimeoutMs;
      const heartbeat = new ProgressHeartbeat(
        (d) => context.heartbeat(d),
        opts.progressIntervalMs ?? 1000,
        // Well inside the heartbeat timeout; without one, often enough to notice cancellation.
        hb ? Math.max(200, Math.floor(hb / 3)) : 5000,
        previousProgress,
      );
      let champion: PulledChampion | null = null;
      if (mirror) {
        const { fetched } = await mirror.pullInputs(Object.values(ctx.inputs));
        const checkpoints = activity === 'train' ? await mirror.pullCheckpoints(ctx) : [];
        // promote reads and moves the category's champion pointer, which lives beside the runs.
        if (activity === 'promote') champion = await pullChampion(mirror, ctx.pipeline, ctx.category);
        await log.write('info', 'fetched inputs from the store', {
          store: mirror.runUrl,
          steps: fetched,
          checkpoints,
          ...(champion ? { champion: champion.fetched } : {}),
        });
      }
      let lastLogged = '';
      let lastCheckpoint = previousProgress?.checkpoint;
      const hooks: StepHooks = {
        progress(details) {
          heartbeat.progress(details);
          if (mirror && details.checkpoint && details.checkpoint !== lastCheckpoint) {
            lastCheckpoint = details.checkpoint;
            mirror.pushCheckpoint(details.checkpoint);
          }
          // The attempt log records milestones, not every batch.
          const milestone = `${details.stage}|${details.epoch ?? ''}|${details.checkpoint ?? ''}`;
          if (milestone !== lastLogged) {
            lastLogged = milestone;
            void log.write('info', 'progress', { progress: details as unknown as JsonValue });
          }
        },
        signal: context.cancellationSignal,
        previousProgress,
        attempt: info.attempt,
      };
      await log.write('info', 'attempt started', { previousProgress, pid: process.pid });
      context.log.info('step started', { ...fields, resumeFrom: previousProgress?.checkpoint });
      heartbeat.flush();
      try {
        const result = await fn(ctx, hooks);
        if (cacheKey && !mirror) await recordCachedStep(ctx, cacheKey);
        if (mirror) {
          for (const problem of await mirror.flush())
            await log.write('warn', 'a checkpoint was not uploaded', { problem });
        }
        await log.write('info', 'attempt finished', {
          outputs: result.outputs.map((o) => o.path),
          summary: result.summary,
        });
        if (mirror && champion && (await pushChampion(mirror, ctx.pipeline, ctx.category, champion)))
          await log.write('info', 'champion pointer published', { store: mirror.runsRootUrl });
        // Published last, so the step's copy in the store includes this attempt's whole log.
        await mirror?.pushStep(ctx.category, ctx.step);
        // Indexed only once published: a cache hit must find the whole step in the bucket.
        if (cacheKey && mirror) await mirror.recordCachedStep(ctx, cacheKey);
        context.log.info('step finished', fields);
        return { result, reused: false };
      } finally {
        heartbeat.stop();
      }
    } catch (err) {
      const failure = toActivityFailure(err, context.cancellationSignal);
      await log.write('error', 'attempt failed', {
        error: describeError(err),
        stack: err instanceof Error ? err.stack : undefined,
        retryable: !(failure instanceof ApplicationFailure && failure.nonRetryable),
      });
      context.log.warn('step failed', { ...fields, error: describeError(err) });
      throw failure;
    } finally {
      await log.close();
      // Lets pending checkpoint uploads finish, so a retry elsewhere finds them.
      await mirror?.close();
      for (const release of held) await release();
      if (held.length > 0) {
        // Everything in the work dir is a copy of the bucket: keep it under its bound.
        const pruned = await pruneWorkDir(defaultWorkDir()).catch((err: unknown) => {
          context.log.warn('could not prune the work dir', { error: describeError(err) });
          return null;
        });
        if (pruned?.removed.length)
          context.log.info('pruned the work dir', { removed: pruned.removed, bytes: pruned.bytes });
      }
    }
  };
  // A named function shows up readably in stack traces and worker logs.
  Object.defineProperty(run, 'name', { value: activity });
  return run;
}

/**
 * UserError -> non-retryable ApplicationFailure typed with its code (likewise a store error that
 * retrying cannot fix, typed STORE_<code>); a step that stopped because
 * the activity was cancelled (or the worker is shutting down) -> CancelledFailure; anything else is
 * rethrown as is, which Temporal treats as retryable.
 */
function toActivityFailure(err: unknown, signal?: AbortSignal): unknown {
  if (isUserError(err)) {
    return ApplicationFailure.create({
      message: err.message,
      type: err.code,
      nonRetryable: true,
      details: [toJson(err.details)],
      cause: err.cause instanceof Error ? err.cause : undefined,
    });
  }
  // A store that refuses access, lacks the bucket or holds a corrupt object will not heal by itself.
  if (isStoreError(err) && !err.retryable) {
    return ApplicationFailure.create({
      message: err.message,
      type: `STORE_${err.code}`,
      nonRetryable: true,
      cause: err,
    });
  }
  if (signal?.aborted && !(err instanceof CancelledFailure)) {
    const reason =
      signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'CANCELLED');
    return new CancelledFailure(reason, [], err instanceof Error ? err : undefined);
  }
  return err;
}

function toJson(value: Record<string, unknown>): JsonValue {
  try {
    return JSON.parse(JSON.stringify(value)) as JsonValue;
  } catch {
    return null;
  }
}
