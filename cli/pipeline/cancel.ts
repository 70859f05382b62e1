/** `npm run pipeline -- cancel <run-id> [--category c]`: cancel a run, or some of its categories. */
import { UserError } from '../../lib/util/errors';
import { targetFromEnv } from '../../temporal/connection';
import { findRun } from '../../temporal/runs';
import { cancelCategoryUpdate } from '../../workflows/definitions';
import { type WorkerFlags, workerSpec } from './flags';
import { errorContext, finish, say, withSession } from './session';

export async function cancelCommand(
  runId: string,
  flags: { category?: string[] } & WorkerFlags,
): Promise<number> {
  errorContext.runId = runId;
  // Embedded: the workflow only acts on the request when a worker runs it, so bring workers up.
  return withSession({ workers: targetFromEnv() ? undefined : workerSpec(flags) }, async (session) => {
    const { handle } = await findRun(session.client, runId);
    if ((await handle.describe()).status.name !== 'RUNNING') {
      throw new UserError('INVALID_ARGUMENT', `run ${runId} is not running`);
    }
    if (flags.category?.length) {
      for (const category of flags.category) {
        try {
          const res = await handle.executeUpdate(cancelCategoryUpdate, { args: [category] });
          say(`Cancelling ${res.category} (was ${res.previousStatus})`);
        } catch (err) {
          const cause =
            err instanceof Error && err.cause instanceof Error ? err.cause.message : (err as Error).message;
          throw new UserError('INVALID_ARGUMENT', cause);
        }
      }
      if (!session.embedded) return 0;
    } else {
      await handle.cancel();
      say(`Cancellation requested for run ${runId}`);
      if (!session.embedded) return 0;
    }
    // Embedded: keep the workers until the run has wound down (or the user presses Ctrl-C).
    const summary = await handle.result().catch(() => undefined);
    if (summary) finish(summary);
    return 0;
  });
}
