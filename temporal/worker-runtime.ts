/**
 * Worker processes. One host runs:
 *  - a CPU worker (this process): the workflows plus the light steps on the CPU task queue;
 *  - training workers, each its own child process polling the GPU/training task queue with ONE
 *    activity at a time: `--train-slots N` per GPU (`--gpus 0,1` pins each child to its GPU:
 *    CUDA_VISIBLE_DEVICES + ANOMALY_SPOTTER_GPU), or N on CPU-only hosts; the cores are shared
 *    between them (ANOMALY_SPOTTER_TRAIN_THREADS). See train-slots.ts.
 * Children that die unexpectedly are restarted (backoff and a limit; temporal/worker-supervisor.ts)
 * with the same environment (GPU index); the activity a dead child was running is failed at once
 * so Temporal retries it without waiting for its heartbeat timeout, resuming from the last
 * heartbeat/checkpoint.
 * SIGINT/SIGTERM: workers stop polling, running activities are cancelled (training checkpoints and
 * stops), children get the same signal, and the process exits when everything has drained.
 */
import { availableParallelism, hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createActivities, type StepRegistry } from '../activities';
import type { SummaryFunction } from '../lib/pipeline/outcome';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { setThreadBudget } from '../lib/train/thread-budget';
import { describeError, UserError } from '../lib/util/errors';
import { reportActivitiesToParent, SUPERVISED_ENV } from './activity-reporter';
import { DEFAULT_NAMESPACE, type TemporalTarget, targetFromEnv } from './connection';
import { isThreadBudgetMessage } from './thread-budgets';
import { trainWorkerSlots } from './train-slots';
import { superviseTrainSlots, supervisorLimitsFromEnv, type TaskFailer } from './worker-supervisor';

export interface WorkerRegistry {
  steps: StepRegistry;
  summary?: SummaryFunction;
}

export type WorkerRole = 'cpu' | 'train';

/** The workflow bundle entry, resolved relative to this file so it works from any cwd. */
export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface RoleWorkerOptions {
  role: WorkerRole;
  /** Concurrent light activities on the CPU worker. */
  cpuSlots?: number;
  /** Prebuilt bundle (tests share one); otherwise the worker bundles WORKFLOWS_PATH itself. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
  /** Overrides for tests (e.g. short shutdown times). */
  extra?: Partial<WorkerOptions>;
}

/** Creates (does not run) the worker for one role. */
export async function createRoleWorker(
  connection: NativeConnection,
  namespace: string,
  registry: WorkerRegistry,
  opts: RoleWorkerOptions,
): Promise<Worker> {
  const activities = createActivities(registry.steps, { summary: registry.summary });
  const common: WorkerOptions = {
    connection,
    namespace,
    taskQueue: opts.role === 'cpu' ? TASK_QUEUES.cpu : TASK_QUEUES.gpu,
    activities,
    identity: opts.identity ?? `${opts.role}@${hostname()}:${process.pid}`,
    // Running activities are cancelled right away on shutdown (the step checkpoints and stops);
    // give them a bounded time to do so before the worker gives up on them.
    shutdownForceTime: '60 seconds',
    // The SDK sends heartbeats at most every 0.8 x heartbeat timeout (30 s for a 2 min timeout);
    // the CLI's live progress reads them from the server, so send the latest every few seconds.
    maxHeartbeatThrottleInterval: '3 seconds',
    defaultHeartbeatThrottleInterval: '3 seconds',
    ...opts.extra,
  };
  if (opts.role === 'train') {
    return Worker.create({
      ...common,
      // Tells a supervising parent which task it runs, so that it can fail it at once if we die.
      interceptors: { activity: [reportActivitiesToParent, ...(opts.extra?.interceptors?.activity ?? [])] },
      maxConcurrentActivityTaskExecutions: 1,
      enableNonLocalActivities: true,
    });
  }
  return Worker.create({
    ...common,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    maxConcurrentActivityTaskExecutions: opts.cpuSlots ?? availableParallelism(),
  });
}

export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  return NativeConnection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
}

interface WorkerCliOptions {
  gpus?: number[];
  trainSlots: number;
  cpuWorker: boolean;
  cpuSlots?: number;
  role?: WorkerRole;
}

function parseGpuList(value: string): number[] {
  const ids = value.split(',').map((s) => s.trim());
  if (ids.some((s) => !/^\d+$/.test(s)))
    throw new InvalidArgumentError(`expected GPU indices like 0,1,2; got '${value}'`);
  return ids.map(Number);
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got '${value}'`);
  return Number(value);
}

/**
 * `npm run worker -- [--gpus 0,1] [--train-slots N] [--no-cpu-worker] [--cpu-slots N]`.
 * `entryFile` is the script to re-run for child processes (the caller's own file).
 */
export async function runWorkerCli(
  argv: string[],
  registry: WorkerRegistry,
  entryFile: string,
): Promise<void> {
  const program = new Command('worker')
    .description(
      'Temporal workers for Anomaly Spotter (TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TLS from env)',
    )
    .option(
      '--gpus <ids>',
      'one training worker process per GPU index (sets CUDA_VISIBLE_DEVICES)',
      parseGpuList,
    )
    .option(
      '--train-slots <n>',
      'training worker processes (per GPU with --gpus; on CPU-only hosts in all)',
      parseCount,
      1,
    )
    .option('--no-cpu-worker', 'do not run the CPU-queue worker (workflows + light steps) on this host')
    .option('--cpu-slots <n>', 'concurrent light activities on the CPU worker (default: cores)', parseCount)
    .addOption(
      // Internal: how the supervisor starts its children.
      new Option('--role <role>', 'run a single worker of this role').choices(['cpu', 'train']).hideHelp(),
    )
    .exitOverride();
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    // --help / --version: commander already printed; bad usage: the user's to fix.
    if (err instanceof CommanderError && err.exitCode === 0) return;
    throw new UserError('INVALID_ARGUMENT', err instanceof Error ? err.message : String(err));
  }
  const opts = program.opts<WorkerCliOptions>();
  const target = targetFromEnv() ?? { address: '127.0.0.1:7233', namespace: DEFAULT_NAMESPACE };

  if (opts.role) {
    await runSingleWorker(target, registry, opts.role, opts.cpuSlots);
    return;
  }
  // One or more processes per GPU (pinned), or per CPU slot; cores shared between them (train-slots.ts).
  const trainChildren = trainWorkerSlots({
    gpus: opts.gpus,
    trainSlots: opts.trainSlots,
    cores: availableParallelism(),
  });
  await superviseWorkers({
    entryFile,
    target,
    registry,
    children: trainChildren,
    cpuWorker: opts.cpuWorker,
    cpuSlots: opts.cpuSlots,
  });
}

async function runSingleWorker(
  target: TemporalTarget,
  registry: WorkerRegistry,
  role: WorkerRole,
  cpuSlots?: number,
  onCreated?: (worker: Worker) => void,
): Promise<void> {
  const connection = await connectWorker(target);
  // Ctrl-C reaches a training child twice: from the terminal (same process group) and relayed by
  // the supervisor. The Runtime (set up by the connection) stops listening after the first signal,
  // so without a listener of our own the second one would kill the process mid-checkpoint. The
  // drain is bounded anyway (shutdownForceTime).
  const ignoreRepeat = (): void => {};
  process.on('SIGINT', ignoreRepeat);
  process.on('SIGTERM', ignoreRepeat);
  // A supervised training child: its share of the host's cores, as other trainings start and end.
  const onBudget = (msg: unknown): void => {
    if (isThreadBudgetMessage(msg)) setThreadBudget(msg.threads);
  };
  if (role === 'train' && process.env[SUPERVISED_ENV] === '1') process.on('message', onBudget);
  try {
    const worker = await createRoleWorker(connection, target.namespace, registry, { role, cpuSlots });
    onCreated?.(worker);
    // Runtime's default shutdown signals (SIGINT, SIGTERM, ...) call worker.shutdown(); run() resolves when drained.
    await worker.run();
  } finally {
    process.off('SIGINT', ignoreRepeat);
    process.off('SIGTERM', ignoreRepeat);
    process.off('message', onBudget);
    await connection.close();
  }
}

interface SuperviseOptions {
  entryFile: string;
  target: TemporalTarget;
  registry: WorkerRegistry;
  children: Array<{ label: string; env: NodeJS.ProcessEnv }>;
  cpuWorker: boolean;
  cpuSlots?: number;
}

async function superviseWorkers(opts: SuperviseOptions): Promise<void> {
  const log = (msg: string): void => void process.stderr.write(`[worker ${process.pid}] ${msg}\n`);
  // A client of our own to fail the activity of a child that died (connected on first need).
  let clientConnection: Promise<Connection> | undefined;
  const failer = async (): Promise<TaskFailer> => {
    clientConnection ??= Connection.connect({
      address: opts.target.address,
      tls: opts.target.tls,
      apiKey: opts.target.apiKey,
    });
    const client = new Client({ connection: await clientConnection, namespace: opts.target.namespace });
    return { fail: (token, err) => client.activity.fail(token, err) };
  };
  const supervisor = superviseTrainSlots({
    command: { file: process.execPath, args: [...process.execArgv, opts.entryFile, '--role', 'train'] },
    slots: opts.children,
    failer,
    log,
    ...supervisorLimitsFromEnv(),
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down (running activities are cancelled and checkpoint)`);
    supervisor.stop(signal);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  try {
    if (opts.cpuWorker) {
      let cpuWorker: Worker | undefined;
      // A slot that gave up stops the host: the CPU worker too.
      void supervisor.done.then(() => {
        if (supervisor.gaveUp && cpuWorker?.getState() === 'RUNNING') cpuWorker.shutdown();
      });
      try {
        await runSingleWorker(opts.target, opts.registry, 'cpu', opts.cpuSlots, (w) => {
          cpuWorker = w;
        });
      } catch (err) {
        log(`CPU worker failed: ${describeError(err)}`);
        stop('SIGTERM');
        await supervisor.done;
        throw err;
      }
      stop('SIGTERM');
    }
    await supervisor.done;
  } finally {
    await clientConnection?.then((c) => c.close()).catch(() => {});
  }
  if (supervisor.gaveUp) {
    throw new Error('a training worker kept crashing and was given up on; see the worker log above');
  }
}
