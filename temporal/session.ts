/**
 * How the CLI reaches Temporal. With TEMPORAL_ADDRESS: that cluster, and workers are expected to
 * be running elsewhere (`npm run worker`). Without it (embedded mode): a local dev server on
 * 127.0.0.1:7233 (reused when one is already listening, else started with its state in
 * `.state/temporal.db` and the Web UI on :8233; ANOMALY_SPOTTER_TEMPORAL_PORT and
 * ANOMALY_SPOTTER_STATE_DIR override both) plus worker processes started from worker.ts. The
 * workers are this session's and stop with `close()` (or on Ctrl-C); the server is shared by all
 * sessions on the state dir and stops when the last of them leaves (temporal/server-lease.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { REPO_ROOT } from '../lib/config/paths';
import { UserError } from '../lib/util/errors';
import { EmbeddedWorkersExitedError } from './cli-errors';
import { type TemporalTarget, targetFromEnv } from './connection';
import { type DevServer, isPortOpen, startDevServer, waitForServer } from './dev-server';
import { ensureSearchAttributes } from './search-attributes';
import {
  addLease,
  clearServerRecord,
  leaseDirs,
  liveLeases,
  readServerRecord,
  removeLease,
  stopServerPid,
  withLeaseLock,
  writeServerRecord,
} from './server-lease';

export const EMBEDDED_ADDRESS = '127.0.0.1:7233';
export const EMBEDDED_UI_PORT = 8233;
/** Embedded server port (Web UI on port + 1000) and state dir: lets tests run their own, isolated. */
export const EMBEDDED_PORT_ENV = 'ANOMALY_SPOTTER_TEMPORAL_PORT';
export const STATE_DIR_ENV = 'ANOMALY_SPOTTER_STATE_DIR';
const SESSION_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const DEFAULT_INTERRUPT_NOTE = '\nInterrupted: stopping the embedded workers and server.';
const WORKER_ENTRY = fileURLToPath(new URL('../worker.ts', import.meta.url));

export interface WorkerSpec {
  /** Training worker processes on a CPU-only host. */
  trainSlots?: number;
  gpus?: number[];
}

export interface TemporalSession {
  client: Client;
  target: TemporalTarget;
  embedded: boolean;
  /** Web UI base URL when known (embedded server, or TEMPORAL_UI_URL). */
  uiUrl?: string;
  /** Log file of the embedded workers, if this session started them. */
  workerLog?: string;
  /** Rejects when the embedded workers exit before close() (e.g. a startup error). */
  workersExited?: Promise<never>;
  /** Embedded: printed when Ctrl-C (or kill) makes the session stop its workers and server, then exit. */
  interruptNote?: string;
  /** Stops what this session started (workers, then server); idempotent. */
  close(): Promise<void>;
}

export interface OpenSessionOptions {
  /** Start embedded workers (only in embedded mode); omit for commands that need no workers. */
  workers?: WorkerSpec;
  stateDir?: string;
  log?: (line: string) => void;
}

export async function openSession(opts: OpenSessionOptions = {}): Promise<TemporalSession> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const external = targetFromEnv();
  if (external) {
    const connection = await Connection.connect({
      address: external.address,
      tls: external.tls,
      apiKey: external.apiKey,
    });
    const client = new Client({ connection, namespace: external.namespace });
    try {
      await ensureSearchAttributes(connection, external.namespace);
    } catch (err) {
      // No such namespace: nothing else will work either (the CLI explains it).
      if ((err as { code?: unknown }).code === 5 && /namespace/i.test((err as Error).message)) {
        await connection.close();
        throw err;
      }
      // Temporal Cloud and locked-down clusters refuse the operator API: the attributes must
      // then be added by an admin; say so instead of failing every workflow task later.
      log(
        `warning: could not check/register search attributes (${(err as Error).message}); ` +
          'make sure AnomalyPipeline, AnomalyRunId, AnomalyCategory and AnomalyStage (Keyword) exist',
      );
    }
    return {
      client,
      target: external,
      embedded: false,
      uiUrl: process.env.TEMPORAL_UI_URL,
      close: () => connection.close(),
    };
  }

  const stateDir = opts.stateDir ?? embeddedStateDir();
  mkdirSync(stateDir, { recursive: true });
  const port = embeddedPort();
  const address = `127.0.0.1:${port}`;
  const uiPort = port + (EMBEDDED_UI_PORT - 7233);
  let serverStart: Promise<DevServer> | undefined;
  let connection: Connection | undefined;
  let workers: ChildProcess | undefined;
  let closing: Promise<void> | undefined;

  // The server runs in its own process group (see below), so it no longer dies with the terminal's:
  // this process stops it on Ctrl-C, kill and hang-up (workers first: training checkpoints), and
  // as a last resort when it exits without close(). One Ctrl-C often arrives more than once (the
  // terminal signals the whole process group, npm forwards it too): repeats are ignored.
  const dirs = leaseDirs(stateDir);
  let leased = false;
  // Last resort (the process exits without close()): leave, and stop the server if nobody else uses it.
  const stopServerOnExit = (): void => {
    if (!leased) return;
    try {
      removeLease(dirs);
      const record = readServerRecord(dirs);
      if (record && liveLeases(dirs).length === 0) process.kill(record.pid, 'SIGTERM');
    } catch {
      /* best effort */
    }
  };
  let interruptNote = DEFAULT_INTERRUPT_NOTE;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(interruptNote);
    void closeOnce().finally(() => process.exit(128 + osConstants.signals[signal]));
  };
  process.on('exit', stopServerOnExit);
  for (const signal of SESSION_SIGNALS) process.on(signal, onSignal);

  const close = async (): Promise<void> => {
    if (workers && workers.exitCode === null && workers.signalCode === null) {
      const child = workers;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // SIGTERM: workers cancel running activities (training checkpoints) and drain.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 70_000);
      await exited;
      clearTimeout(timer);
    }
    // Also when interrupted while it was starting (the start holds the lock; this waits for it).
    const started = await serverStart?.catch(() => undefined);
    if (leased) {
      await withLeaseLock(dirs, async () => {
        removeLease(dirs);
        leased = false;
        const others = liveLeases(dirs);
        const record = readServerRecord(dirs);
        if (others.length > 0) {
          if (record) log(`Leaving the embedded Temporal server running for ${others.length} other run(s)`);
          return;
        }
        if (!record) return;
        if (started && started.process.pid === record.pid) await started.stop();
        else await stopServerPid(record.pid);
        clearServerRecord(dirs);
      }).catch((err: unknown) => {
        // The lease is gone either way; whoever leaves last stops the server.
        removeLease(dirs);
        leased = false;
        log(`warning: could not settle the embedded server's lease (${(err as Error).message})`);
      });
    }
    process.off('exit', stopServerOnExit);
    for (const signal of SESSION_SIGNALS) process.off(signal, onSignal);
    // Last: after an interrupt, calls of the progress view are still in flight; closing the
    // channel under them makes their retry timers throw ("Channel has been shut down") unless the
    // process exits right after, which it then does.
    await connection?.close();
  };
  const closeOnce = (): Promise<void> => {
    closing ??= close();
    return closing;
  };

  // A failure below leaves the process soon (exit code 2): the exit hook then stops the server.
  let server: DevServer | undefined;
  const dbFile = join(stateDir, 'temporal.db');
  // Join (or start) the shared server under the lease lock: no two sessions start one, and none
  // stops it while another is joining.
  await withLeaseLock(dirs, async () => {
    addLease(dirs, { address });
    leased = true;
    const record = readServerRecord(dirs);
    if (await isPortOpen(address)) {
      await waitForServer(address, 10_000);
      const shared = record?.address === address ? ` (shared, started by pid ${record.pid})` : '';
      log(`Using the Temporal server already running at ${address}${shared}`);
      return;
    }
    if (record) clearServerRecord(dirs);
    log(`Starting the embedded Temporal dev server (state: ${dbFile}) ...`);
    serverStart = startDevServer({
      port,
      uiPort,
      dbFile,
      logFile: join(stateDir, 'temporal-server.log'),
      // Ctrl-C must not reach it: it has to outlive the draining workers so that their last
      // reports (the cancelled training attempt) arrive; otherwise `resume` waits for the train
      // step's heartbeat timeout before it retries. Other sessions may also still be using it.
      detached: true,
    });
    server = await serverStart;
    // It may outlive this process (another run still uses it): do not keep this one alive.
    server.process.unref();
    const pid = server.process.pid;
    if (pid) writeServerRecord(dirs, { pid, address, dbFile, startedAt: new Date().toISOString() });
  });
  const target: TemporalTarget = { address, namespace: 'default' };
  connection = await Connection.connect({ address: target.address });
  const client = new Client({ connection, namespace: target.namespace });
  // A reused server may have been started without our --search-attribute flags.
  if (!server) await ensureSearchAttributes(connection, target.namespace);

  let workerLog: string | undefined;
  let workersExited: Promise<never> | undefined;
  // Not once interrupted: close() has already passed the point where it stops them.
  if (opts.workers && !closing) {
    workerLog = join(stateDir, 'logs', `worker-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
    mkdirSync(join(stateDir, 'logs'), { recursive: true });
    const out = openSync(workerLog, 'a');
    const args = [...process.execArgv, WORKER_ENTRY];
    if (opts.workers.gpus?.length) args.push('--gpus', opts.workers.gpus.join(','));
    else args.push('--train-slots', String(opts.workers.trainSlots ?? 1));
    workers = spawn(process.execPath, args, {
      env: { ...process.env, TEMPORAL_ADDRESS: target.address, TEMPORAL_NAMESPACE: target.namespace },
      stdio: ['ignore', out, out],
    });
    const child = workers;
    workersExited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => {
        if (!closing) reject(new EmbeddedWorkersExitedError(signal ?? `exit code ${code}`, workerLog));
      });
    });
    // Only a failure before close() matters; keep Node from flagging the promise as unhandled.
    workersExited.catch(() => {});
  }

  const session: TemporalSession = {
    client,
    target,
    embedded: true,
    uiUrl: server?.uiUrl ?? `http://127.0.0.1:${uiPort}`,
    workerLog,
    workersExited,
    get interruptNote() {
      return interruptNote;
    },
    set interruptNote(note: string | undefined) {
      interruptNote = note ?? DEFAULT_INTERRUPT_NOTE;
    },
    close: closeOnce,
  };
  return session;
}

/** The embedded server's state folder (ANOMALY_SPOTTER_STATE_DIR, default `.state/`). */
export function embeddedStateDir(): string {
  return process.env[STATE_DIR_ENV]?.trim() || join(REPO_ROOT, '.state');
}

/** The embedded server's gRPC port (ANOMALY_SPOTTER_TEMPORAL_PORT, default 7233). */
export function embeddedPort(): number {
  const raw = process.env[EMBEDDED_PORT_ENV]?.trim();
  if (!raw) return 7233;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port < 1 || port > 65535 - 1000) {
    throw new UserError('INVALID_ARGUMENT', `${EMBEDDED_PORT_ENV}=${raw}: expected a port number (1-64535)`);
  }
  return port;
}

/** Web UI link of a workflow. */
export function workflowUrl(
  uiUrl: string | undefined,
  namespace: string,
  workflowId: string,
): string | undefined {
  if (!uiUrl) return undefined;
  return `${uiUrl.replace(/\/$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
