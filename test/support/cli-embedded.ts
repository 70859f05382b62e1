/**
 * Helpers for tests that run `npm run pipeline`'s command line in embedded mode (a dev server and
 * workers of its own on a free port and state dir), with the real steps on tiny synthetic data.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { REPO_ROOT } from '../../lib/config/paths';
import { freePort } from '../../lib/util/free-port';
import { isPortOpen } from '../../temporal/dev-server';
import { EMBEDDED_PORT_ENV, STATE_DIR_ENV } from '../../temporal/session';

export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `npm run pipeline -- <args>` without npm: the script's own command line (node or a .bin tool). */
export function pipelineCommand(): { file: string; args: string[] } {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const [tool, ...args] = pkg.scripts.pipeline.split(/\s+/);
  return { file: tool === 'node' ? process.execPath : join(REPO_ROOT, 'node_modules', '.bin', tool), args };
}

/** A free port whose Web UI port (port + 1000) is free too. */
export async function freeEmbeddedPort(): Promise<number> {
  let port: number;
  do {
    port = await freePort();
  } while (port > 64_000 || (await isPortOpen(`127.0.0.1:${port + 1000}`)));
  return port;
}

export function startCli(
  args: string[],
  opts: { stateDir?: string; port?: number; env?: NodeJS.ProcessEnv },
): CliRun {
  const { file, args: scriptArgs } = pipelineCommand();
  const { TEMPORAL_ADDRESS: _cluster, MLFLOW_TRACKING_URI: _noMlflow, ...env } = process.env;
  const child = spawn(file, [...scriptArgs, ...args], {
    cwd: REPO_ROOT,
    env: {
      ...env,
      ...(opts.stateDir ? { [STATE_DIR_ENV]: opts.stateDir } : {}),
      ...(opts.port ? { [EMBEDDED_PORT_ENV]: String(opts.port) } : {}),
      LOG_LEVEL: 'warn',
      ...opts.env,
    },
    // Its own process group, like a job a shell starts in a terminal.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

export async function waitFor(
  what: string,
  ready: () => boolean | Promise<boolean>,
  timeoutMs: number,
  cli?: CliRun,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (cli && cli.child.exitCode !== null)
      throw new Error(
        `the CLI exited (${cli.child.exitCode}) while waiting for ${what}:\n${cli.stdout()}\n${cli.stderr()}`,
      );
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids of processes whose command line mentions `needle` (the dev server names its DB file). */
export function pidsMentioning(needle: string): number[] {
  if (!existsSync('/proc')) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(join('/proc', entry, 'cmdline'), 'utf8');
      const state = readFileSync(join('/proc', entry, 'stat'), 'utf8');
      if (cmd.includes(needle) && state.slice(state.lastIndexOf(')') + 2)[0] !== 'Z')
        pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** pipelines/quick.yaml with tiny training settings, written to `<dir>/<name>.yaml`. */
export function writeTinyPipeline(
  dir: string,
  name: string,
  training: Record<string, unknown>,
  patch: (pipeline: Record<string, unknown>) => void = () => {},
): string {
  const quick = parseYaml(readFileSync(join(REPO_ROOT, 'pipelines', 'quick.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const pipeline: Record<string, unknown> = {
    ...quick,
    name,
    training: {
      image_size: 32,
      batch_size: 4,
      model: { widths: [4, 8] },
      early_stopping: { patience: 1000 },
      checkpoint: { every_epochs: 1, keep_last: 2 },
      ...training,
    },
  };
  patch(pipeline);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringifyYaml(pipeline));
  return file;
}
