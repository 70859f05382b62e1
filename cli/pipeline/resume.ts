/**
 * `npm run pipeline -- resume <run-id>`: attach to a run that is still running, else start it again
 * from its original plan, reusing every step whose outputs still verify.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { DEFAULT_RUNS_ROOT, displayPath } from '../../lib/config/paths';
import type { RunPlan } from '../../lib/pipeline/plan';
import { isUserError, UserError } from '../../lib/util/errors';
import { targetFromEnv } from '../../temporal/connection';
import { findRun, type PipelineHandle, startPipelineRun } from '../../temporal/runs';
import { type PipelineWorkflowInput, planForScheduledRun } from '../../workflows/definitions';
import { type WorkerFlags, workerSpec } from './flags';
import { errorContext, finish, follow, onInterrupt, printStarted, say, withSession } from './session';

/** The plan a run was started with: from its workflow history, else from `<runDir>/plan.json`. */
async function originalPlan(client: Client, runId: string): Promise<RunPlan> {
  try {
    const { handle } = await findRun(client, runId);
    const history = await handle.fetchHistory();
    const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    if (payload) {
      const input =
        client.options.loadedDataConverter.payloadConverter.fromPayload<PipelineWorkflowInput>(payload);
      return input.runIdFromWorkflowId ? planForScheduledRun(input.plan, handle.workflowId) : input.plan;
    }
  } catch (err) {
    if (!(isUserError(err) || err instanceof WorkflowNotFoundError)) throw err;
  }
  // History gone (namespace retention): look for the plan copy in the runs folder.
  if (existsSync(DEFAULT_RUNS_ROOT)) {
    for (const pipeline of readdirSync(DEFAULT_RUNS_ROOT)) {
      const file = join(DEFAULT_RUNS_ROOT, pipeline, runId, 'plan.json');
      if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as RunPlan;
    }
  }
  throw new UserError(
    'INVALID_ARGUMENT',
    `no run '${runId}' found (neither in Temporal nor under ${displayPath(DEFAULT_RUNS_ROOT)})`,
  );
}

export async function resumeCommand(
  runId: string,
  flags: WorkerFlags & { detach?: boolean; progress: boolean },
): Promise<number> {
  errorContext.runId = runId;
  if (flags.detach && !targetFromEnv()) {
    throw new UserError('INVALID_ARGUMENT', '--detach needs TEMPORAL_ADDRESS (see `run --help`)');
  }
  return withSession({ workers: targetFromEnv() ? undefined : workerSpec(flags) }, async (session) => {
    let handle: PipelineHandle | undefined;
    try {
      const found = await findRun(session.client, runId);
      if ((await found.handle.describe()).status.name === 'RUNNING') {
        // E.g. the embedded client was stopped: workers are back, the run simply continues.
        say(`Run ${runId} is still running; attaching.`);
        handle = found.handle;
      }
    } catch (err) {
      if (!isUserError(err)) throw err;
    }
    if (!handle) {
      const plan = await originalPlan(session.client, runId);
      // Every category again, but steps whose result.json and artifact hashes still match are
      // reused, so in effect only failed/unfinished work re-runs and the summary covers all.
      handle = await startPipelineRun(session.client, plan, { reuseCompleted: true });
      printStarted(session, handle, plan);
    }
    if (flags.detach) return 0;
    const release = onInterrupt(runId, session);
    try {
      return finish(await follow(session, handle, flags.progress));
    } finally {
      release();
    }
  });
}
