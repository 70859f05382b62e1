/** `npm run pipeline -- status <run-id>`: progress of a running run, or the summary of a finished one. */
import { displayPath } from '../../lib/config/paths';
import { UserError } from '../../lib/util/errors';
import { readRunProgress } from '../../temporal/progress';
import { findRun } from '../../temporal/runs';
import { workflowUrl } from '../../temporal/session';
import { describeCategory } from './render';
import { errorContext, finish, say, withSession } from './session';

export async function statusCommand(runId: string, flags: { json?: boolean }): Promise<number> {
  errorContext.runId = runId;
  return withSession({}, async (session) => {
    const { handle, memo } = await findRun(session.client, runId);
    const desc = await handle.describe();
    const state = desc.status.name;
    if (state === 'COMPLETED') {
      const summary = await handle.result();
      if (flags.json) say(JSON.stringify(summary, null, 2));
      else finish(summary);
      return summary.status === 'completed' ? 0 : 1;
    }
    if (state !== 'RUNNING') {
      say(
        flags.json
          ? JSON.stringify({ runId, status: state })
          : `Run ${runId}: ${state.toLowerCase()} (${memo?.runDir ?? ''})`,
      );
      return 1;
    }
    const progress = await readRunProgress(session.client, handle).catch((err: unknown) => {
      throw new UserError(
        'INVALID_ARGUMENT',
        `run ${runId} is running but no worker answers (${(err as Error).message}); ${session.embedded ? `continue it with: npm run pipeline -- resume ${runId}` : 'start `npm run worker`'}`,
      );
    });
    if (flags.json) {
      say(JSON.stringify(progress, null, 2));
      return 0;
    }
    say(`Run ${runId}: ${progress.pipeline.status} (${displayPath(progress.pipeline.runDir)})`);
    const url = workflowUrl(session.uiUrl, session.target.namespace, handle.workflowId);
    if (url) say(`Temporal Web UI: ${url}`);
    for (const [name, status] of Object.entries(progress.pipeline.categories)) {
      const line = describeCategory(status, progress.categories[name]);
      say(
        `  ${name.padEnd(16)} ${String(Math.round(line.fraction * 100)).padStart(3)}%  ${status === 'running' ? line.text : status}`,
      );
    }
    return 0;
  });
}
