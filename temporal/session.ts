/**
 * How the CLI reaches Temporal. With TEMPORAL_ADDRESS: that cluster, and workers are expected to
 * be running elsewhere (`npm run worker`). Without it (embedded mode): a local dev server on
 * 127.0.0.1:7233 (reused when one is already listening, else started with its state in
 * `.state/temporal.db` and the Web UI on :8233) plus worker processes started from worker.ts; both
 * are stopped again by `close()` if this session started them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { REPO_ROOT } from '../lib/config/paths';
import { type TemporalTarget, targetFromEnv } from './connection';
import { type DevServer, isPortOpen, startDevServer, waitForServer } from './dev-server';
import { ensureSearchAttributes } from './search-attributes';

export const EMBEDDED_ADDRESS = '127.0.0.1:7233';
export const EMBEDDED_UI_PORT = 8233;
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

  const stateDir = opts.stateDir ?? join(REPO_ROOT, '.state');
  mkdirSync(stateDir, { recursive: true });
  let server: DevServer | undefined;
  if (await isPortOpen(EMBEDDED_ADDRESS)) {
    await waitForServer(EMBEDDED_ADDRESS, 10_000);
    log(`Using the Temporal server already running at ${EMBEDDED_ADDRESS}`);
  } else {
    log(`Starting the embedded Temporal dev server (state: ${join(stateDir, 'temporal.db')}) ...`);
    server = await startDevServer({
      port: 7233,
      uiPort: EMBEDDED_UI_PORT,
      dbFile: join(stateDir, 'temporal.db'),
      logFile: join(stateDir, 'temporal-server.log'),
    });
  }
  const target: TemporalTarget = { address: EMBEDDED_ADDRESS, namespace: 'default' };
  const connection = await Connection.connect({ address: target.address });
  const client = new Client({ connection, namespace: target.namespace });
  // A reused server may have been started without our --search-attribute flags.
  if (!server) await ensureSearchAttributes(connection, target.namespace);

  let workers: ChildProcess | undefined;
  let workerLog: string | undefined;
  let workersExited: Promise<never> | undefined;
  let closing = false;
  if (opts.workers) {
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
        if (!closing)
          reject(new Error(`the embedded workers exited (${signal ?? `code ${code}`}); see ${workerLog}`));
      });
    });
    // Only a failure before close() matters; keep Node from flagging the promise as unhandled.
    workersExited.catch(() => {});
  }

  return {
    client,
    target,
    embedded: true,
    uiUrl: server?.uiUrl ?? `http://127.0.0.1:${EMBEDDED_UI_PORT}`,
    workerLog,
    workersExited,
    async close() {
      closing = true;
      if (workers && workers.exitCode === null && workers.signalCode === null) {
        const child = workers;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        // SIGTERM: workers cancel running activities (training checkpoints) and drain.
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 70_000);
        await exited;
        clearTimeout(timer);
      }
      await connection.close();
      await server?.stop();
    },
  };
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
