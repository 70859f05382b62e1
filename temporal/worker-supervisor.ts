/**
 * Keeps a host's training worker processes staffed. Each slot (a GPU index, or a CPU training
 * slot) is one child process with a fixed environment (CUDA_VISIBLE_DEVICES stays with the slot
 * across restarts). A child that dies unexpectedly is:
 *  - reported: the activity task it was running (its task token, sent over IPC by
 *    temporal/activity-reporter.ts) is failed at once as retryable `WORKER_DIED`, so Temporal
 *    retries it now rather than after the step's heartbeat timeout; the retry resumes from the
 *    last heartbeat / newest valid checkpoint;
 *  - restarted after a backoff (1 s, doubling, at most 30 s; reset once a child has run for a
 *    minute), at most `maxRestarts` times within `restartWindowMs`; beyond that the slot gives up
 *    and the supervisor stops (a crash loop needs a person: see the worker log).
 * It also splits the host's cores between the trainings running at the moment (temporal/thread-budgets):
 * when a training ends and fewer remain, the others are told to use its threads too.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { ApplicationFailure } from '@temporalio/common';
import { isActivityMessage, SUPERVISED_ENV } from './activity-reporter';
import { ThreadBudgets } from './thread-budgets';

export interface TrainSlot {
  label: string;
  env: NodeJS.ProcessEnv;
}

/** What the supervisor needs to fail a dead child's activity (a Temporal client's `activity`). */
export interface TaskFailer {
  fail(taskToken: Uint8Array, err: Error): Promise<void>;
}

export interface SupervisorOptions {
  /** Command line of one training child (the supervisor adds an IPC channel). */
  command: { file: string; args: string[] };
  slots: TrainSlot[];
  /** Fails the activity a dead child was running; undefined: leave it to the heartbeat timeout. */
  failer?: () => Promise<TaskFailer | undefined>;
  log: (line: string) => void;
  /** Restarts allowed per slot within `restartWindowMs` (default 5 in 10 minutes). */
  maxRestarts?: number;
  restartWindowMs?: number;
  /** First restart delay (default 1000 ms), doubled per quick crash up to maxBackoffMs (30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A child that ran this long resets the backoff (default 60 s). */
  healthyAfterMs?: number;
  /** Cores the trainings share (default: this host's); each running one is told its share. */
  cores?: number;
}

export interface Supervisor {
  /** Resolves when every slot has stopped: after stop(), or when a slot gave up (then `gaveUp`). */
  done: Promise<void>;
  readonly gaveUp: boolean;
  /** Relays the signal to the children (they drain: cancel, checkpoint) and stops restarting. */
  stop(signal: NodeJS.Signals): void;
  children(): ChildProcess[];
}

export const SUPERVISOR_ENV = {
  maxRestarts: 'ANOMALY_SPOTTER_WORKER_MAX_RESTARTS',
  initialBackoffMs: 'ANOMALY_SPOTTER_WORKER_RESTART_BACKOFF_MS',
} as const;

export function superviseTrainSlots(opts: SupervisorOptions): Supervisor {
  const maxRestarts = opts.maxRestarts ?? 5;
  const windowMs = opts.restartWindowMs ?? 10 * 60_000;
  const initialBackoff = opts.initialBackoffMs ?? 1000;
  const maxBackoff = opts.maxBackoffMs ?? 30_000;
  const healthyAfter = opts.healthyAfterMs ?? 60_000;
  let stopping = false;
  let gaveUp = false;
  const running = new Set<ChildProcess>();
  const timers = new Set<NodeJS.Timeout>();
  const log = opts.log;
  // Idle slots' cores go to the trainings still running (lib/train/thread-budget).
  const budgets = new ThreadBudgets<ChildProcess>(opts.cores ?? availableParallelism());
  const tellBudgets = (): void => {
    for (const { child, message } of budgets.changes()) {
      try {
        if (child.connected) child.send(message);
      } catch {
        // The child is going away; its exit updates the budgets.
      }
    }
  };

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    for (const t of timers) clearTimeout(t);
    for (const child of running) child.kill(signal);
  };

  const failTasks = async (
    slot: TrainSlot,
    pid: number | undefined,
    tokens: Map<string, string>,
    how: string,
  ) => {
    if (tokens.size === 0) return;
    const failer = await opts.failer?.().catch(() => undefined);
    if (!failer) return;
    for (const [token, what] of tokens) {
      const err = ApplicationFailure.retryable(
        `training worker ${slot.label} (pid ${pid}) died (${how}) while running ${what}`,
        'WORKER_DIED',
      );
      try {
        await failer.fail(Buffer.from(token, 'base64'), err);
        log(`failed ${what} of the dead worker ${slot.label} at once so that Temporal retries it now`);
      } catch (e) {
        // Already completed, timed out or cancelled: nothing to do.
        log(`could not fail ${what} of ${slot.label} (${(e as Error).message}); its heartbeat timeout will`);
      }
    }
  };

  const runSlot = (slot: TrainSlot): Promise<void> =>
    new Promise((resolve) => {
      const restarts: number[] = [];
      let backoff = initialBackoff;
      const launch = (): void => {
        if (stopping) {
          resolve();
          return;
        }
        const startedAt = Date.now();
        const child = spawn(opts.command.file, opts.command.args, {
          env: { ...process.env, ...slot.env, [SUPERVISED_ENV]: '1' },
          stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
        });
        running.add(child);
        const envNote =
          slot.env.CUDA_VISIBLE_DEVICES !== undefined
            ? `, CUDA_VISIBLE_DEVICES=${slot.env.CUDA_VISIBLE_DEVICES}`
            : '';
        log(`started training worker ${slot.label} (pid ${child.pid}${envNote})`);
        // base64 task token -> "activity <type> <id> (attempt n) of <workflow>"
        const tokens = new Map<string, string>();
        child.on('message', (msg: unknown) => {
          if (!isActivityMessage(msg)) return;
          if (msg.kind === 'activity-started')
            tokens.set(
              msg.taskToken,
              `activity ${msg.activityType} ${msg.activityId} (attempt ${msg.attempt}) of ${msg.workflowId ?? '?'}`,
            );
          else tokens.delete(msg.taskToken);
          budgets.update(
            child,
            msg.taskToken,
            msg.kind === 'activity-started' ? msg.activityType : null,
            msg.kind === 'activity-started',
          );
          tellBudgets();
        });
        child.once('error', (err) => log(`training worker ${slot.label}: ${err.message}`));
        child.once('exit', (code, signal) => {
          running.delete(child);
          budgets.remove(child);
          tellBudgets();
          if (stopping) return resolve();
          const how = signal ?? `exit code ${code}`;
          void failTasks(slot, child.pid, tokens, how);
          const now = Date.now();
          if (now - startedAt >= healthyAfter) backoff = initialBackoff;
          while (restarts.length && now - restarts[0] > windowMs) restarts.shift();
          if (restarts.length >= maxRestarts) {
            log(
              `training worker ${slot.label} exited (${how}); it was restarted ${restarts.length} times in ` +
                `${Math.round(windowMs / 1000)} s: giving up (see the errors above), stopping this worker host`,
            );
            gaveUp = true;
            stop('SIGTERM');
            return resolve();
          }
          restarts.push(now);
          const delay = backoff;
          backoff = Math.min(maxBackoff, backoff * 2);
          log(
            `training worker ${slot.label} exited (${how}); restarting in ${(delay / 1000).toFixed(1)} s ` +
              `(restart ${restarts.length} of at most ${maxRestarts} in ${Math.round(windowMs / 1000)} s)`,
          );
          const timer = setTimeout(() => {
            timers.delete(timer);
            launch();
          }, delay);
          timers.add(timer);
        });
      };
      launch();
    });

  const done = Promise.all(opts.slots.map(runSlot)).then(() => {});
  return {
    done,
    get gaveUp() {
      return gaveUp;
    },
    stop,
    children: () => [...running],
  };
}

/** Restart limits from the environment (tests and operators tune them without flags). */
export function supervisorLimitsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): Pick<SupervisorOptions, 'maxRestarts' | 'initialBackoffMs'> {
  const num = (name: string): number | undefined => {
    const raw = env[name]?.trim();
    return raw && /^\d+$/.test(raw) ? Number(raw) : undefined;
  };
  return {
    maxRestarts: num(SUPERVISOR_ENV.maxRestarts),
    initialBackoffMs: num(SUPERVISOR_ENV.initialBackoffMs),
  };
}
