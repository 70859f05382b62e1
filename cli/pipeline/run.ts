/** `npm run pipeline [run]`: start a run from a pipeline YAML and follow it to its summary. */
import { join } from 'node:path';
import { isRemoteStoreUrl, openStore } from '../../lib/store/open';
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

async function writeRunFile(runDir: string, name: string, value: unknown): Promise<void> {
  if (!isRemoteStoreUrl(runDir)) return writeJsonAtomic(join(runDir, name), value);
  const store = openStore(runDir);
  try {
    await store.putBytes(name, `${JSON.stringify(value, null, 2)}\n`, { contentType: 'application/json' });
  } finally {
    await store.close();
  }
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
  // A copy of the plan next to the results: what ran, and what `resume` falls back to. For a run
  // in object storage this is also the first write to the bucket: bad credentials fail here.
  await writeRunFile(plan.runDir, 'plan.json', plan);
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
