/**
 * `npm run bench:pipeline [-- --pipeline pipelines/quick.yaml --category weave --json out.json]`
 * Orchestration overhead of one pipeline run: starts a private Temporal dev server (free port, temp
 * SQLite: other people's runs on :7233 cannot steal or add tasks) and the real worker.ts processes,
 * waits until every task queue has pollers (worker start-up is reported, not counted), runs the
 * pipeline, and reads the workflow histories: activity scheduled/started/closed times from Temporal,
 * step body start/end from each step's result (the same startedAt/finishedAt as its result.json).
 * Overhead = wall time - activity time on the observed critical chain (see pipeline-timeline.ts).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import { Command } from 'commander';
import { trainingOverridesFromFlags } from '../lib/config/cli-overrides';
import { DEFAULT_RUNS_ROOT, displayPath } from '../lib/config/paths';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { writeJsonAtomic } from '../lib/util/atomic';
import { positiveInt } from '../lib/util/cli-args';
import { freePort } from '../lib/util/free-port';
import { startDevServer } from '../temporal/dev-server';
import { startPipelineRun } from '../temporal/runs';
import type { StepActivityOutput, StepInvocation } from '../workflows/definitions';
import {
  type ActivitySpan,
  analyseRun,
  bodyMs,
  type OverheadAnalysis,
  type RunTimeline,
} from './pipeline-timeline';

const WORKER_ENTRY = fileURLToPath(new URL('../worker.ts', import.meta.url));

interface BenchFlags {
  pipeline: string;
  category?: string[];
  dataRoot?: string;
  runsRoot: string;
  epochs?: number;
  set?: string[];
  trainSlots?: number;
  json?: string;
  rerunCached?: boolean;
}

const flags = new Command('bench:pipeline')
  .description('Pipeline orchestration overhead: wall time vs time inside activities')
  .option('--pipeline <file>', 'pipeline YAML', 'pipelines/quick.yaml')
  .option('--category <names...>', "categories (default: the pipeline's dataset.categories)")
  .option('--data-root <dir>', "dataset root (default: the pipeline's, else the demo dataset)")
  .option('--runs-root <dir>', 'where the run folder goes', DEFAULT_RUNS_ROOT)
  .option('--epochs <n>', 'override training.epochs', positiveInt)
  .option('--set <key=value>', 'training override (repeatable)', (v: string, prev: string[] = []) => [
    ...prev,
    v,
  ])
  .option('--train-slots <n>', 'training worker processes (default: min(concurrency, cores))', positiveInt)
  .option('--json <file>', 'results JSON (default: <run dir>/bench-pipeline.json)')
  .option(
    '--rerun-cached',
    'then run the same pipeline again with the step cache on (runs in a temp runs root): cached vs uncached wall time',
  )
  .parse()
  .opts<BenchFlags>();

const TASK_QUEUE_TYPE_WORKFLOW = 1;
const TASK_QUEUE_TYPE_ACTIVITY = 2;

/** Waits until the workflow worker and every training worker poll, so start-up is not measured as overhead. */
async function waitForPollers(client: Client, trainSlots: number, timeoutMs: number): Promise<void> {
  const pollers = async (name: string, type: number): Promise<number> => {
    const res = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name },
      taskQueueType: type,
    });
    return res.pollers?.length ?? 0;
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [wf, cpu, gpu] = await Promise.all([
      pollers(TASK_QUEUES.cpu, TASK_QUEUE_TYPE_WORKFLOW),
      pollers(TASK_QUEUES.cpu, TASK_QUEUE_TYPE_ACTIVITY),
      pollers(TASK_QUEUES.gpu, TASK_QUEUE_TYPE_ACTIVITY),
    ]);
    if (wf > 0 && cpu > 0 && gpu >= trainSlots) return;
    if (Date.now() > deadline)
      throw new Error(`workers not polling after ${timeoutMs} ms (wf ${wf}, cpu ${cpu}, gpu ${gpu})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

type HistoryEvents = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>;

async function historyOf(client: Client, workflowId: string): Promise<HistoryEvents> {
  return (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
}

/** Activity spans of one workflow history; step bodies from the activities' own results. */
function activitySpans(client: Client, events: HistoryEvents): ActivitySpan[] {
  const converter = client.options.loadedDataConverter.payloadConverter;
  const spans = new Map<string, ActivitySpan>();
  for (const e of events) {
    const at = tsToMs(e.eventTime);
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      const type = scheduled.activityType?.name ?? '?';
      const input = scheduled.input?.payloads?.[0];
      const invocation = type !== 'summary' && input ? converter.fromPayload<StepInvocation>(input) : null;
      spans.set(String(e.eventId), {
        label: invocation ? `${invocation.ctx.category} / ${invocation.ctx.step}` : type,
        attempts: 0,
        scheduledMs: at,
        startedMs: at,
        closedMs: at,
        body: null,
      });
    }
    const started = e.activityTaskStartedEventAttributes;
    const startedSpan = started && spans.get(String(started.scheduledEventId));
    if (started && startedSpan) {
      startedSpan.startedMs = at;
      startedSpan.attempts = started.attempt ?? 1;
    }
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes ??
      e.activityTaskCanceledEventAttributes;
    const span = closed && spans.get(String(closed.scheduledEventId));
    if (span) {
      span.closedMs = at;
      const payload = e.activityTaskCompletedEventAttributes?.result?.payloads?.[0];
      if (payload && !span.label.startsWith('summary')) {
        const { result } = converter.fromPayload<StepActivityOutput>(payload);
        span.body = { startMs: Date.parse(result.startedAt), endMs: Date.parse(result.finishedAt) };
      }
    }
  }
  return [...spans.values()];
}

async function runTimeline(client: Client, workflowId: string): Promise<RunTimeline> {
  const events = await historyOf(client, workflowId);
  const first = events[0];
  const last = events.at(-1);
  const activities = activitySpans(client, events);
  for (const e of events) {
    const child = e.childWorkflowExecutionStartedEventAttributes?.workflowExecution?.workflowId;
    if (child) activities.push(...activitySpans(client, await historyOf(client, child)));
  }
  return { startMs: tsToMs(first?.eventTime), endMs: tsToMs(last?.eventTime), activities };
}

const sec = (ms: number): string => (ms / 1000).toFixed(2);

function printReport(a: OverheadAnalysis, run: RunTimeline, header: string): void {
  const rows: Array<[string, string, string]> = [
    ['wall time (workflow start -> close)', sec(a.wallMs), '100.0'],
    [`sum of activity time (${a.activityCount} activities)`, sec(a.activitySumMs), ''],
    [
      'critical-path activity time',
      sec(a.criticalPathActivityMs),
      ((100 * a.criticalPathActivityMs) / a.wallMs).toFixed(1),
    ],
    ['overhead = wall - critical path', sec(a.overheadMs), a.overheadPct.toFixed(1)],
    ['  start -> first activity started', sec(a.breakdown.startToFirstActivityMs), ''],
    ['  between critical-path activities', sec(a.breakdown.betweenActivitiesMs), ''],
    ['  activity adapter (start/close around body)', sec(a.breakdown.inActivityAdapterMs), ''],
    ['  last activity -> workflow close', sec(a.breakdown.lastActivityToEndMs), ''],
    ['schedule -> start on critical path', sec(a.criticalScheduleToStartMs), ''],
    ['mean schedule -> start, all activities', sec(a.meanScheduleToStartMs), ''],
  ];
  const out: string[] = [header, '', '| measure | seconds | % of wall |', '|---|---|---|'];
  for (const [k, v, p] of rows) out.push(`| ${k} | ${v} | ${p} |`);
  out.push(
    '',
    '| activity | attempts | scheduled->started s | adapter s | body s |',
    '|---|---|---|---|---|',
  );
  for (const s of [...run.activities].sort((x, y) => x.scheduledMs - y.scheduledMs)) {
    out.push(
      `| ${s.label} | ${s.attempts} | ${sec(s.startedMs - s.scheduledMs)} | ${sec(s.closedMs - s.startedMs - bodyMs(s))} | ${sec(bodyMs(s))} |`,
    );
  }
  out.push('', `critical path: ${a.criticalPath.join(' -> ')}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), 'anomaly-bench-pipeline-'));
  // Overhead is measured on a run that does its work: no step cache, unless the cached rerun is
  // measured too, in a runs root of its own (earlier runs elsewhere cannot make the first run cached).
  const planFor = () =>
    buildRunPlan({
      pipelinePath: flags.pipeline,
      dataRoot: flags.dataRoot,
      categories: flags.category,
      runsRoot: flags.rerunCached ? join(stateDir, 'runs') : flags.runsRoot,
      overrides: trainingOverridesFromFlags({ set: flags.set, epochs: flags.epochs }),
      noCache: !flags.rerunCached,
    });
  const plan = await planFor();
  const trainSlots = flags.trainSlots ?? Math.max(1, Math.min(plan.concurrency, availableParallelism()));
  const setupStart = performance.now();
  const server = await startDevServer({
    port: await freePort(),
    uiPort: null,
    dbFile: join(stateDir, 'temporal.db'),
    logFile: join(stateDir, 'server.log'),
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const log = openSync(join(stateDir, 'workers.log'), 'a');
  const workers: ChildProcess = spawn(
    process.execPath,
    [...process.execArgv, WORKER_ENTRY, '--train-slots', String(trainSlots)],
    { env: { ...process.env, TEMPORAL_ADDRESS: server.address }, stdio: ['ignore', log, log] },
  );
  const workersDied = new Promise<never>((_, reject) =>
    workers.once('exit', (code, signal) =>
      reject(new Error(`worker.ts exited (${signal ?? code}); see ${join(stateDir, 'workers.log')}`)),
    ),
  );
  workersDied.catch(() => {}); // only awaited until the run is over
  try {
    await Promise.race([waitForPollers(client, trainSlots, 180_000), workersDied]);
    const setupMs = performance.now() - setupStart;
    const handle = await startPipelineRun(client, plan);
    const summary = await Promise.race([handle.result(), workersDied]);
    const timeline = await runTimeline(client, handle.workflowId);
    const analysis = analyseRun(timeline);
    const header = [
      `pipeline ${plan.pipeline} (${displayPath(flags.pipeline)}), run ${plan.runId}: ${summary.status}; ` +
        `categories ${plan.categories.map((c) => c.name).join(', ')}; concurrency ${plan.concurrency}; train slots ${trainSlots}`,
      `server + workers ready in ${sec(setupMs)} s (not counted); ${cpus().length} CPUs, load average at the end ${loadavg()
        .map((l) => l.toFixed(2))
        .join(', ')}; node ${process.version}`,
    ].join('\n');
    printReport(analysis, timeline, header);
    let rerun: { wallMs: number; reused: number; steps: number } | null = null;
    if (flags.rerunCached) {
      const again = await planFor();
      const h = await startPipelineRun(client, again);
      const s2 = await Promise.race([h.result(), workersDied]);
      const t2 = analyseRun(await runTimeline(client, h.workflowId));
      const states = s2.categories.flatMap((c) => Object.values(c.steps));
      rerun = {
        wallMs: t2.wallMs,
        reused: states.filter((x) => x === 'reused').length,
        steps: states.length,
      };
      process.stdout.write(
        `\nunchanged rerun with the step cache (run ${again.runId}): wall ${sec(t2.wallMs)} s vs ${sec(analysis.wallMs)} s ` +
          `uncached (${(analysis.wallMs / Math.max(1, t2.wallMs)).toFixed(1)}x); ${rerun.reused}/${rerun.steps} steps reused\n`,
      );
    }
    const jsonPath = flags.json ?? join(plan.runDir, 'bench-pipeline.json');
    await writeJsonAtomic(jsonPath, {
      pipeline: plan.pipeline,
      runId: plan.runId,
      status: summary.status,
      categories: plan.categories.map((c) => c.name),
      concurrency: plan.concurrency,
      trainSlots,
      setupMs,
      cpus: cpus().length,
      loadAverage: loadavg(),
      analysis,
      activities: timeline.activities,
      cachedRerun: rerun,
    });
    process.stdout.write(`JSON: ${displayPath(jsonPath)}\n`);
    if (summary.status !== 'completed') process.exitCode = 1;
  } finally {
    if (workers.exitCode === null && workers.signalCode === null) {
      const exited = new Promise<void>((resolve) => workers.once('exit', () => resolve()));
      workers.kill('SIGTERM');
      await exited;
    } else {
      // Keep the log for the error message above.
      process.stderr.write(`worker log kept: ${join(stateDir, 'workers.log')}\n`);
    }
    await connection.close();
    await server.stop();
    if (workers.exitCode === 0 || workers.signalCode === 'SIGTERM' || workers.exitCode === null)
      await rm(stateDir, { recursive: true, force: true });
  }
}

await main();
// Temporal's native connection can keep the event loop alive briefly; we are done.
process.exit(process.exitCode ?? 0);
