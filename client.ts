/**
 * `npm run pipeline -- ...`: start, follow, inspect, resume and cancel pipeline runs, and manage
 * their schedules. Without TEMPORAL_ADDRESS everything runs locally (embedded dev server + worker
 * processes, see temporal/session.ts); with it, the given cluster and external `npm run worker`s.
 * Exit codes: 0 all categories completed, 1 some failed/cancelled (or an internal error),
 * 2 the user's to fix (bad flag, config, dataset, unknown run...), 3 Temporal unusable, 4 disk,
 * 130 interrupted (temporal/cli-errors.ts; errors are explained there).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { trainingOverridesFromFlags } from './lib/config/cli-overrides';
import { DEFAULT_RUNS_ROOT, displayPath } from './lib/config/paths';
import type { RunPlan } from './lib/pipeline/plan';
import { writeJsonAtomic } from './lib/util/atomic';
import { positiveInt, positiveNumber } from './lib/util/cli-args';
import { isUserError, UserError } from './lib/util/errors';
import {
  type ErrorContext,
  explainCliError,
  explainFailedCategories,
  TemporalUnreachableError,
} from './temporal/cli-errors';
import { targetFromEnv } from './temporal/connection';
import { readRunProgress } from './temporal/progress';
import { createProgressView, describeCategory, formatSummary } from './temporal/render';
import { findRun, type PipelineHandle, startPipelineRun } from './temporal/runs';
import {
  backfillPipelineSchedule,
  createPipelineSchedule,
  deletePipelineSchedule,
  describePipelineSchedule,
  listPipelineSchedules,
  triggerPipelineSchedule,
} from './temporal/schedules';
import { embeddedServerCommand } from './temporal/server-command';
import { openSession, type TemporalSession, type WorkerSpec, workflowUrl } from './temporal/session';
import {
  cancelCategoryUpdate,
  type PipelineSummary,
  type PipelineWorkflowInput,
  planForScheduledRun,
} from './workflows/definitions';

const DEFAULT_PIPELINE = 'pipelines/quick.yaml';
const POLL_MS = 1000;

const say = (line = ''): void => void process.stdout.write(`${line}\n`);
/** What a failure message can name: the run, the server (filled in as the command gets there). */
const errorContext: ErrorContext = {};
const note = (line: string): void => void process.stderr.write(`${line}\n`);

// ---------- option parsing ----------

function gpuList(value: string): number[] {
  if (!/^\d+(,\d+)*$/.test(value))
    throw new InvalidArgumentError(`expected GPU indices like 0,1; got '${value}'`);
  return value.split(',').map(Number);
}
function isoDate(value: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new InvalidArgumentError(`expected an ISO date/time, got '${value}'`);
  return d;
}

interface PlanFlags {
  pipeline: string;
  category?: string[];
  allCategories?: boolean;
  dataRoot?: string;
  runsRoot?: string;
  epochs?: number;
  batchSize?: number;
  imageSize?: number;
  lr?: number;
  seed?: number;
  /** Repeatable `--set key=value` training overrides (see docs/CONFIG.md). */
  set?: string[];
}

interface WorkerFlags {
  trainSlots?: number;
  gpus?: number[];
}

function addPlanOptions(cmd: Command): Command {
  return cmd
    .option('--pipeline <file>', 'pipeline YAML (or a name in pipelines/)', DEFAULT_PIPELINE)
    .option('--category <names...>', "categories to train (default: the pipeline's dataset.categories)")
    .option('--all-categories', 'every category found under the data root')
    .option(
      '--data-root <dir>',
      "dataset root in the MVTec AD layout (default: the pipeline's, else the demo dataset)",
    )
    .option('--runs-root <dir>', 'where run folders go', DEFAULT_RUNS_ROOT)
    .option('--epochs <n>', 'override training.epochs', positiveInt)
    .option('--batch-size <n>', 'override training.batch_size', positiveInt)
    .option('--image-size <px>', 'override training.image_size', positiveInt)
    .option('--lr <rate>', 'override training.optimizer.lr', positiveNumber)
    .option('--seed <n>', 'override training.seed', (v) => {
      if (!/^-?\d+$/.test(v)) throw new InvalidArgumentError(`expected an integer, got '${v}'`);
      return Number(v);
    })
    .option(
      '--set <key=value>',
      'override any training setting, e.g. --set epochs=3 --set model.widths=[8,16] (repeatable; --epochs etc. win over --set)',
      (item: string, previous: string[] = []) => [...previous, item],
    );
}

function addWorkerOptions(cmd: Command): Command {
  return cmd
    .option(
      '--train-slots <n>',
      'embedded mode: training worker processes (default: min(concurrency, cores))',
      positiveInt,
    )
    .option('--gpus <ids>', 'embedded mode: one training worker per GPU index', gpuList);
}

async function planFromFlags(flags: PlanFlags & { runId?: string }): Promise<RunPlan> {
  if (flags.allCategories && flags.category?.length) {
    throw new UserError('INVALID_ARGUMENT', 'use either --all-categories or --category, not both');
  }
  const overrides = trainingOverridesFromFlags(flags);
  // Loaded on demand: it pulls in the dataset code, which commands like `status` do not need.
  const { buildRunPlan } = await import('./lib/pipeline/build-plan');
  return buildRunPlan({
    pipelinePath: flags.pipeline,
    dataRoot: flags.dataRoot,
    categories: flags.allCategories ? 'all' : flags.category,
    overrides,
    runsRoot: flags.runsRoot,
    runId: flags.runId,
  });
}

function workerSpec(flags: WorkerFlags, plan?: RunPlan): WorkerSpec {
  return {
    gpus: flags.gpus,
    // tfjs-wasm trains on one thread: one process per category trained at once, within the cores.
    trainSlots: flags.trainSlots ?? Math.max(1, Math.min(plan?.concurrency ?? 1, availableParallelism())),
  };
}

// ---------- session helpers ----------

async function withSession<T>(
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
async function follow(
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

function printStarted(
  session: TemporalSession,
  handle: PipelineHandle,
  plan: Pick<RunPlan, 'runId' | 'runDir'>,
): void {
  say(`Run ${plan.runId} -> ${displayPath(plan.runDir)}`);
  const url = workflowUrl(session.uiUrl, session.target.namespace, handle.workflowId);
  if (url) say(`Temporal Web UI: ${url}`);
  if (session.workerLog) note(`Worker log: ${displayPath(session.workerLog)}`);
}

function finish(summary: PipelineSummary): number {
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
function onInterrupt(runId: string, session: TemporalSession): () => void {
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

// ---------- commands ----------

interface RunFlags extends PlanFlags, WorkerFlags {
  runId?: string;
  detach?: boolean;
  progress: boolean;
}

async function runCommand(flags: RunFlags): Promise<number> {
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

async function statusCommand(runId: string, flags: { json?: boolean }): Promise<number> {
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

async function resumeCommand(
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

async function cancelCommand(runId: string, flags: { category?: string[] } & WorkerFlags): Promise<number> {
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

interface ScheduleCreateFlags extends PlanFlags {
  paused?: boolean;
}

async function scheduleCommand(
  action: string,
  id: string | undefined,
  flags: ScheduleCreateFlags & { start?: Date; end?: Date },
): Promise<number> {
  const needId = (): string => {
    if (!id) throw new UserError('INVALID_ARGUMENT', `schedule ${action} needs a schedule id`);
    if (!/^[A-Za-z0-9_-]+$/.test(id))
      throw new UserError('INVALID_ARGUMENT', `invalid schedule id '${id}': letters, digits, _ and - only`);
    return id;
  };
  const plan = action === 'create' ? await planFromFlags(flags) : undefined;
  return withSession({}, async ({ client, embedded }) => {
    switch (action) {
      case 'create': {
        await createPipelineSchedule(client, needId(), plan!, { paused: flags.paused });
        say(
          `Schedule ${id} created: ${plan!.schedule!.cron.join(', ')} (overlap: ${plan!.schedule!.overlap})`,
        );
        if (embedded)
          note(
            'Note: with the embedded server, scheduled runs only happen while a server and workers are running.',
          );
        return 0;
      }
      case 'list': {
        const all = await listPipelineSchedules(client);
        if (all.length === 0) say('No pipeline schedules.');
        for (const s of all) {
          const next = s.info?.nextActionTimes?.[0]?.toISOString() ?? '-';
          say(
            `${s.scheduleId.padEnd(24)} ${(String(s.memo?.pipeline ?? '')).padEnd(12)} next: ${next}${s.state.paused ? ' (paused)' : ''}`,
          );
        }
        return 0;
      }
      case 'describe': {
        const d = await describePipelineSchedule(client, needId());
        say(`Schedule ${d.scheduleId}${d.state.paused ? ' (paused)' : ''}: ${d.state.note ?? ''}`);
        say(`  overlap: ${d.policies.overlap}, catchup window: ${d.policies.catchupWindow} ms`);
        say(
          `  next: ${
            d.info.nextActionTimes
              .slice(0, 3)
              .map((t) => t.toISOString())
              .join(', ') || '-'
          }`,
        );
        say(
          `  recent: ${d.info.recentActions.map((a) => `${a.takenAt.toISOString()} ${a.action.workflow.workflowId}`).join('\n          ') || '-'}`,
        );
        say(`  running: ${d.info.runningActions.map((a) => a.workflow.workflowId).join(', ') || '-'}`);
        return 0;
      }
      case 'trigger':
        await triggerPipelineSchedule(client, needId());
        say(`Schedule ${id} triggered.`);
        return 0;
      case 'backfill': {
        if (!flags.start || !flags.end)
          throw new UserError('INVALID_ARGUMENT', 'schedule backfill needs --start and --end');
        await backfillPipelineSchedule(client, needId(), flags.start, flags.end);
        say(`Schedule ${id}: backfill ${flags.start.toISOString()} .. ${flags.end.toISOString()} requested.`);
        return 0;
      }
      case 'delete':
        await deletePipelineSchedule(client, needId());
        say(`Schedule ${id} deleted.`);
        return 0;
      default:
        throw new UserError(
          'INVALID_ARGUMENT',
          `unknown schedule action '${action}' (create, list, describe, trigger, backfill, delete)`,
        );
    }
  });
}

// ---------- program ----------

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('pipeline')
    .description(
      'Train anomaly detectors per category, orchestrated by Temporal.\n' +
        'Without TEMPORAL_ADDRESS a local dev server (state in .state/temporal.db, Web UI http://localhost:8233)\n' +
        'and worker processes are started and stopped automatically; with it, that cluster and `npm run worker`s are used.',
    )
    .option('--verbose', 'on errors, print the details (stack traces)')
    .exitOverride()
    .showHelpAfterError();

  const run = addWorkerOptions(addPlanOptions(program.command('run', { isDefault: true })))
    .description(`start a run and follow it (default pipeline: ${DEFAULT_PIPELINE})`)
    .option('--run-id <id>', 'run id (default: timestamp + random suffix)')
    .option('--detach', 'start and exit (needs TEMPORAL_ADDRESS)')
    .option('--no-progress', 'no live progress output');
  run.action(async (flags: RunFlags) => setExit(await runCommand(flags)));

  program
    .command('status <run-id>')
    .description('progress of a running run, or the summary of a finished one')
    .option('--json', 'machine-readable output')
    .action(async (runId: string, flags: { json?: boolean }) => setExit(await statusCommand(runId, flags)));

  addWorkerOptions(program.command('resume <run-id>'))
    .description(
      're-run a finished run, reusing every step whose result.json and artifact hashes still match; attach if still running',
    )
    .option('--detach', 'start and exit (needs TEMPORAL_ADDRESS)')
    .option('--no-progress', 'no live progress output')
    .action(async (runId: string, flags: WorkerFlags & { detach?: boolean; progress: boolean }) =>
      setExit(await resumeCommand(runId, flags)),
    );

  addWorkerOptions(program.command('cancel <run-id>'))
    .description('cancel a run, or only some of its categories')
    .option('--category <names...>', 'cancel only these categories')
    .action(async (runId: string, flags: { category?: string[] } & WorkerFlags) =>
      setExit(await cancelCommand(runId, flags)),
    );

  program
    .command('server')
    .description(
      'the shared embedded Temporal dev server: status, or stop it (default: only when no run uses it)',
    )
    .addArgument(new Command().createArgument('<action>', 'status | stop').choices(['status', 'stop']))
    .option('--force', 'stop: even while runs still use it (they stay resumable)')
    .action(async (action: 'status' | 'stop', flags: { force?: boolean }) =>
      setExit(await embeddedServerCommand(action, { force: flags.force, say })),
    );

  addPlanOptions(program.command('schedule'))
    .description('manage Temporal Schedules of a pipeline (cron + overlap policy from its YAML `schedule:`)')
    .addArgument(
      new Command()
        .createArgument('<action>', 'create | list | describe | trigger | backfill | delete')
        .choices(['create', 'list', 'describe', 'trigger', 'backfill', 'delete']),
    )
    .argument('[schedule-id]', 'schedule id (letters, digits, _ and -)')
    .option('--paused', 'create: start paused')
    .addOption(new Option('--start <time>', 'backfill: from (ISO time)').argParser(isoDate))
    .addOption(new Option('--end <time>', 'backfill: to (ISO time)').argParser(isoDate))
    .action(
      async (
        action: string,
        id: string | undefined,
        flags: ScheduleCreateFlags & { start?: Date; end?: Date },
      ) => setExit(await scheduleCommand(action, id, flags)),
    );
  return program;
}

async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help/version exit 0; bad usage was already printed by commander.
      return err.exitCode === 0 ? 0 : 2;
    }
    const explained = explainCliError(err, { ...errorContext, verbose: argv.includes('--verbose') });
    for (const line of explained.lines) note(line);
    return explained.exitCode;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Temporal's native connection can keep the event loop alive briefly; we are done.
process.exit(process.exitCode);
