/**
 * What every pipeline command shares: output lines, a Temporal session (embedded or cluster) around
 * the command, following a run's progress to its summary, and Ctrl-C.
 */
import { displayPath } from '../../lib/config/paths';
import type { RunPlan } from '../../lib/pipeline/plan';
import { isUserError } from '../../lib/util/errors';
import {
  type ErrorContext,
  explainFailedCategories,
  TemporalUnreachableError,
} from '../../temporal/cli-errors';
import { targetFromEnv } from '../../temporal/connection';
import { readRunProgress } from '../../temporal/progress';
import type { PipelineHandle } from '../../temporal/runs';
import { openSession, type TemporalSession, type WorkerSpec, workflowUrl } from '../../temporal/session';
import type { PipelineSummary } from '../../workflows/definitions';
import { createProgressView, formatSummary } from './render';

const POLL_MS = 1000;

export const say = (line = ''): void => void process.stdout.write(`${line}\n`);
export const note = (line: string): void => void process.stderr.write(`${line}\n`);
/** What a failure message can name: the run, the server (filled in as the command gets there). */
export const errorContext: ErrorContext = {};

export async function withSession<T>(
  opts: { workers?: WorkerSpec },
  fn: (session: TemporalSession) => Promise<T>,
): Promise<T> {
  let session: TemporalSession;
  try {
    session = await openSession({ workers: opts.workers, log: note });
  } catch (err) {
    if (isUserError(err)) throw err;
    errorContext.namespace = targetFromEnv()?.namespace;
    throw new TemporalUnreachableError(targetFromEnv()?.address ?? 'the embedded server', { cause: err });
  }
  Object.assign(errorContext, {
    address: session.target.address,
    namespace: session.target.namespace,
    embedded: session.embedded,
  });
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

/** Draws progress until the run closes; returns its summary (throws if it was cancelled/terminated). */
export async function follow(
  session: TemporalSession,
  handle: PipelineHandle,
  showProgress: boolean,
): Promise<PipelineSummary> {
  const view = showProgress ? createProgressView() : undefined;
  let done = false;
  const result = handle.result().finally(() => {
    done = true;
  });
  const draw = async (): Promise<void> => {
    while (!done) {
      try {
        view?.update(await readRunProgress(session.client, handle));
      } catch {
        // Progress is best effort (e.g. the workflow has not had its first task yet).
      }
      await Promise.race([new Promise((r) => setTimeout(r, POLL_MS)), result.catch(() => {})]);
    }
  };
  const drawing = draw();
  try {
    return await (session.workersExited ? Promise.race([result, session.workersExited]) : result);
  } finally {
    done = true;
    await drawing;
    try {
      if (view) view.update(await readRunProgress(session.client, handle));
    } catch {
      /* final frame is cosmetic */
    }
    view?.stop();
  }
}

export function printStarted(
  session: TemporalSession,
  handle: PipelineHandle,
  plan: Pick<RunPlan, 'runId' | 'runDir'>,
): void {
  say(`Run ${plan.runId} -> ${displayPath(plan.runDir)}`);
  const url = workflowUrl(session.uiUrl, session.target.namespace, handle.workflowId);
  if (url) say(`Temporal Web UI: ${url}`);
  if (session.workerLog) note(`Worker log: ${displayPath(session.workerLog)}`);
}

export function finish(summary: PipelineSummary): number {
  say();
  say(formatSummary(summary));
  if (summary.status !== 'completed') {
    for (const line of explainFailedCategories(summary)) note(line);
    say(`Continue with: npm run pipeline -- resume ${summary.runId}`);
  }
  return summary.status === 'completed' ? 0 : 1;
}

/**
 * Ctrl-C. Embedded mode: the session stops the workers (training checkpoints) and the server, then
 * exits 130; the run stays resumable. Cluster mode: detach, the run continues there.
 */
export function onInterrupt(runId: string, session: TemporalSession): () => void {
  if (session.embedded) {
    session.interruptNote = `\nInterrupted: stopping workers (training checkpoints). Continue with: npm run pipeline -- resume ${runId}`;
    return () => {};
  }
  const handler = (): void => {
    note(`\nDetached; the run continues on the cluster. Follow with: npm run pipeline -- status ${runId}`);
    void session.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}
