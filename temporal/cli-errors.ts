/**
 * Every failure the pipeline CLI can meet, said for people: one or two sentences naming what
 * failed and what to run next (`npm run pipeline -- resume <run-id>` once a run exists), and an
 * exit code per kind (docs/ORCHESTRATION.md). Stack traces only with `--verbose`.
 *
 *   0   every category completed          1   some category failed or was cancelled; internal error
 *   2   the user's to fix (flag, config, dataset, unknown run or schedule, run id in use)
 *   3   Temporal unusable: server gone / connection refused, namespace missing, permission denied
 *   4   storage: disk full, read-only file system, no permission to write the run folder; the object
 *       store (--runs-root / --data-root s3://...) refused, lacks the bucket, or cannot be reached
 *   130 interrupted (Ctrl-C)
 */
import {
  ScheduleNotFoundError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { NamespaceNotFoundError } from '@temporalio/common';
import { isStoreError } from '../lib/store/errors';
import { isUserError } from '../lib/util/errors';

/** gRPC status codes (numbers fixed by the gRPC spec). */
const GrpcStatus = {
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export const EXIT = {
  ok: 0,
  failed: 1,
  user: 2,
  temporal: 3,
  storage: 4,
  interrupted: 130,
} as const;

export interface ErrorContext {
  /** The run the command was about, once known (run id of `run`, argument of `resume` etc.). */
  runId?: string;
  /** host:port the CLI talks to, and the namespace. */
  address?: string;
  namespace?: string;
  embedded?: boolean;
  verbose?: boolean;
}

export interface ExplainedError {
  lines: string[];
  exitCode: number;
}

/** The embedded worker processes died under a running command. */
export class EmbeddedWorkersExitedError extends Error {
  constructor(
    readonly how: string,
    readonly logFile: string | undefined,
  ) {
    super(`the embedded workers exited (${how})${logFile ? `; see ${logFile}` : ''}`);
    this.name = 'EmbeddedWorkersExitedError';
  }
}

/** Could not connect to Temporal at all (wraps the connection error). */
export class TemporalUnreachableError extends Error {
  constructor(
    readonly address: string,
    options: { cause: unknown },
  ) {
    super(`cannot reach Temporal at ${address}`, options);
    this.name = 'TemporalUnreachableError';
  }
}

const STORAGE_CODES: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EIO: 'an I/O error occurred',
};

function chain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let cur: unknown = err;
  for (let i = 0; cur && i < 10; i++) {
    out.push(cur);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return out;
}

function grpcCode(err: unknown): number | undefined {
  for (const e of chain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

function messages(err: unknown): string {
  return chain(err)
    .map((e) => (e instanceof Error ? e.message : String(e)))
    .join(' | ');
}

function errnoOf(err: unknown): NodeJS.ErrnoException | undefined {
  for (const e of chain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code in STORAGE_CODES) return e as NodeJS.ErrnoException;
  }
  // Errors that crossed a process (activity failures) keep only the text.
  const m = /\b(ENOSPC|EDQUOT|EROFS|EACCES|EPERM|EIO)\b/.exec(messages(err));
  if (m) return Object.assign(new Error(messages(err)), { code: m[1] });
  return undefined;
}

function resumeHint(ctx: ErrorContext, when = ''): string {
  return ctx.runId
    ? `${when}continue with: npm run pipeline -- resume ${ctx.runId}`
    : `${when}run the command again`;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function explainCliError(err: unknown, ctx: ErrorContext = {}): ExplainedError {
  const where =
    err instanceof TemporalUnreachableError ? err.address : (ctx.address ?? 'the Temporal server');
  const namespace = ctx.namespace ?? 'default';
  const explained = classify(err, ctx, where, namespace);
  const lines = explained.lines.map((l, i) => (i === 0 ? `error: ${l}` : l));
  if (ctx.verbose) {
    for (const e of chain(err)) if (e instanceof Error && e.stack) lines.push(e.stack);
  } else if (explained.exitCode === EXIT.failed) {
    lines.push('(run it again with --verbose for the details)');
  }
  return { lines, exitCode: explained.exitCode };
}

function classify(err: unknown, ctx: ErrorContext, where: string, namespace: string): ExplainedError {
  if (isUserError(err)) return { lines: [err.message], exitCode: EXIT.user };
  if (err instanceof ScheduleNotFoundError)
    return { lines: [`schedule '${err.scheduleId}' not found`], exitCode: EXIT.user };
  if (err instanceof WorkflowExecutionAlreadyStartedError)
    return { lines: [`a run with this id is already running (${err.workflowId})`], exitCode: EXIT.user };
  if (err instanceof WorkflowNotFoundError)
    return {
      lines: [
        `${ctx.runId ? `run '${ctx.runId}'` : 'the run'} was not found on Temporal namespace '${namespace}' at ${where}. ` +
          'List runs in the Web UI, or start one with: npm run pipeline -- run',
      ],
      exitCode: EXIT.user,
    };
  if (err instanceof EmbeddedWorkersExitedError)
    return {
      lines: [
        `The embedded workers stopped (${err.how})${err.logFile ? `; their log is ${err.logFile}` : ''}.`,
        capitalize(resumeHint(ctx, 'Once the cause is fixed, ')),
      ],
      exitCode: EXIT.failed,
    };

  if (isStoreError(err))
    return {
      lines: [
        // Not capitalised: store messages start with the object's URL.
        `${err.message.replace(/\.$/, '')}.`,
        err.retryable
          ? capitalize(resumeHint(ctx, 'Once the store answers again, '))
          : 'Fix the store settings (the AWS_* variables, the bucket in the URL), then run the command again.',
      ],
      exitCode: EXIT.storage,
    };

  const storage = errnoOf(err);
  if (storage) {
    const what = STORAGE_CODES[storage.code ?? ''] ?? storage.code;
    const path = storage.path ? ` ${storage.path}` : '';
    return {
      lines: [
        `Could not write${path || ' to the run folder'}: ${what} (${storage.code}).`,
        capitalize(
          resumeHint(ctx, 'Free some space or fix the permissions (or pick another --runs-root), then '),
        ),
      ],
      exitCode: EXIT.storage,
    };
  }

  const text = messages(err);
  const code = grpcCode(err);
  if (
    err instanceof NamespaceNotFoundError ||
    chain(err).some((e) => e instanceof NamespaceNotFoundError) ||
    (code === GrpcStatus.NOT_FOUND && /namespace/i.test(text))
  )
    return {
      lines: [
        `Temporal namespace '${namespace}' does not exist at ${where}.`,
        `Create it (temporal operator namespace create ${namespace}) or set TEMPORAL_NAMESPACE to an existing one.`,
      ],
      exitCode: EXIT.temporal,
    };
  if (
    code === GrpcStatus.PERMISSION_DENIED ||
    code === GrpcStatus.UNAUTHENTICATED ||
    /permission denied|unauthori[sz]ed|unauthenticated/i.test(text)
  )
    return {
      lines: [
        `Temporal at ${where} refused the request on namespace '${namespace}' (${code === GrpcStatus.UNAUTHENTICATED ? 'not authenticated' : 'permission denied'}).`,
        'Check TEMPORAL_API_KEY or TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY and the namespace permissions.',
      ],
      exitCode: EXIT.temporal,
    };
  if (
    err instanceof TemporalUnreachableError ||
    code === GrpcStatus.UNAVAILABLE ||
    code === GrpcStatus.DEADLINE_EXCEEDED ||
    /ECONNREFUSED|ECONNRESET|connection refused|failed to connect|tcp connect error|transport error|channel has been shut down|No connection established/i.test(
      text,
    )
  ) {
    const gone = err instanceof TemporalUnreachableError ? 'cannot be reached' : 'stopped answering';
    const fix = ctx.embedded
      ? 'The embedded dev server is gone (its log: temporal-server.log in the state folder, .state/ by default).'
      : 'Check that the server is running and TEMPORAL_ADDRESS is right.';
    return {
      lines: [
        `The Temporal server at ${where} ${gone} (connection refused or lost). ${fix}`,
        capitalize(resumeHint(ctx, 'Your run is saved; once the server is back, ')),
      ],
      exitCode: EXIT.temporal,
    };
  }
  return {
    lines: [
      `${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}.`,
      capitalize(resumeHint(ctx, 'If it was a passing problem, ')),
    ],
    exitCode: EXIT.failed,
  };
}

/**
 * Sentences for categories that failed on a full or read-only disk (the failure crossed from a
 * worker as text), so that the summary table's truncated reason is not all a person gets.
 */
export function explainFailedCategories(summary: {
  runId: string;
  categories: Array<{ category: string; status: string; failure?: { step: string; message: string } }>;
}): string[] {
  const lines: string[] = [];
  for (const c of summary.categories) {
    if (c.status !== 'failed' || !c.failure) continue;
    const m = /\b(ENOSPC|EDQUOT|EROFS|EACCES|EPERM|EIO)\b/.exec(c.failure.message);
    if (!m) continue;
    lines.push(
      `${c.category}: step ${c.failure.step} could not write its files: ${STORAGE_CODES[m[1]]} (${m[1]}). ` +
        `Free some space or fix the permissions, then continue with: npm run pipeline -- resume ${summary.runId}`,
    );
  }
  return lines;
}
