/** `npm run pipeline [run]`: start a run from a pipeline YAML and follow it to its summary. */
import { join } from 'node:path';
import { writeJsonAtomic } from '../../lib/util/atomic';
import { UserError } from '../../lib/util/errors';
import { targetFromEnv } from '../../temporal/connection';
import { startPipelineRun } from '../../temporal/runs';
import { type PlanFlags, planFromFlags, type WorkerFlags, workerSpec } from './flags';
import { errorContext, finish, follow, onInterrupt, printStarted, say, withSession } from './session';

export interface RunFlags extends PlanFlags, WorkerFlags {
  runId?: string;
  detach?: boolean;
  progress: boolean;
}

export async function runCommand(flags: RunFlags): Promise<number> {
  if (flags.detach && !targetFromEnv()) {
    throw new UserError(
      'INVALID_ARGUMENT',
      '--detach needs TEMPORAL_ADDRESS (a Temporal cluster with `npm run worker` processes): the embedded server and workers stop when this command exits',
    );
  }
  const plan = await planFromFlags(flags);
  errorContext.runId = plan.runId;
  // A copy of the plan next to the results: what ran, and what `resume` falls back to.
  await writeJsonAtomic(join(plan.runDir, 'plan.json'), plan);
  return withSession({ workers: targetFromEnv() ? undefined : workerSpec(flags, plan) }, async (session) => {
    const handle = await startPipelineRun(session.client, plan);
    printStarted(session, handle, plan);
    if (flags.detach) {
      say(`Detached. Follow with: npm run pipeline -- status ${plan.runId}`);
      return 0;
    }
    const release = onInterrupt(plan.runId, session);
    try {
      return finish(await follow(session, handle, flags.progress));
    } finally {
      release();
    }
  });
}
