/**
 * Ctrl-C and `resume` through the real CLI, as a user runs them: `npm run pipeline`'s command line
 * in embedded mode (its own dev server and workers; a free port, state dir, data and runs folder of
 * its own), the real steps on a tiny 2-category dataset. The interrupt is a SIGINT to the CLI's
 * whole process group, which is what a terminal sends on Ctrl-C: every process in the group gets
 * it, the CLI and the workers alike.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { REPO_ROOT } from '../lib/config/paths';
import { synthesizeDataset } from '../lib/data/synth';
import type { StepResult } from '../lib/steps/contracts';
import { verifyCheckpoint } from '../lib/train/checkpoints';
import { freePort } from '../lib/util/free-port';
import { isPortOpen } from '../temporal/dev-server';
import { EMBEDDED_PORT_ENV, STATE_DIR_ENV } from '../temporal/session';

const PIPELINE = 'cliint';
const RUN_ID = 'interrupted';
const CATEGORIES = ['chip', 'weave'];
// An epoch takes ~0.2 s here: after the first checkpoint, seconds of training are left for the
// interrupt to land in, and the resumed run stays short.
const EPOCHS = 40;

let dir: string;
let runDir: string;
let stateDir: string;
let port: number;
let stepNames: string[];
const started: ChildProcess[] = [];

interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `npm run pipeline -- <args>` without npm: the script's own command line (node or a .bin tool). */
function pipelineCommand(): { file: string; args: string[] } {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const [tool, ...args] = pkg.scripts.pipeline.split(/\s+/);
  return { file: tool === 'node' ? process.execPath : join(REPO_ROOT, 'node_modules', '.bin', tool), args };
}

function startCli(args: string[]): CliRun {
  const { file, args: scriptArgs } = pipelineCommand();
  const { TEMPORAL_ADDRESS: _cluster, MLFLOW_TRACKING_URI: _noMlflow, ...env } = process.env;
  const child = spawn(file, [...scriptArgs, ...args], {
    cwd: REPO_ROOT,
    env: { ...env, [STATE_DIR_ENV]: stateDir, [EMBEDDED_PORT_ENV]: String(port), LOG_LEVEL: 'warn' },
    // Its own process group, like a job a shell starts in a terminal.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function waitFor(what: string, ready: () => boolean, timeoutMs: number, cli?: CliRun): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (cli && cli.child.exitCode !== null)
      throw new Error(`the CLI exited (${cli.child.exitCode}) while waiting for ${what}:\n${cli.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A process group exists while any of its members does. */
function groupAlive(pgid: number): boolean {
  return alive(-pgid);
}

/** The CLI's process group id (its pid: it leads its own group). Never 0, which means "our group". */
function groupOf(cli: CliRun): number {
  if (!cli.child.pid) throw new Error('the CLI did not start');
  return cli.child.pid;
}

/** Pids of processes whose command line mentions `needle` (the dev server names its DB file). */
function pidsMentioning(needle: string): number[] {
  if (!existsSync('/proc')) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(join('/proc', entry, 'cmdline'), 'utf8').includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Supervisor and training worker pids from the embedded workers' logs (one per CLI run). */
function workerPids(): number[] {
  const logs = join(stateDir, 'logs');
  const pids = new Set<number>();
  for (const name of readdirSync(logs).filter((n) => n.startsWith('worker-'))) {
    const text = readFileSync(join(logs, name), 'utf8');
    for (const m of text.matchAll(/\[worker (\d+)\] started training worker \S+ \(pid (\d+)\)/g)) {
      pids.add(Number(m[1]));
      pids.add(Number(m[2]));
    }
  }
  return [...pids];
}

async function expectNothingLeft(cli: CliRun, what: string): Promise<void> {
  const pgid = groupOf(cli);
  // The CLI waits for its workers and server; only helpers like esbuild may take a moment longer.
  await waitFor(`the CLI's process group to end (${what})`, () => !groupAlive(pgid), 10_000);
  const workers = workerPids();
  expect(workers.length).toBeGreaterThan(0);
  for (const pid of workers) expect(alive(pid), `worker pid ${pid} after ${what}`).toBe(false);
  expect(pidsMentioning(join(stateDir, 'temporal.db')), `dev server after ${what}`).toEqual([]);
  expect(await isPortOpen(`127.0.0.1:${port}`)).toBe(false);
  expect(await isPortOpen(`127.0.0.1:${port + 1000}`)).toBe(false);
}

interface LogLine {
  time: string;
  msg: string;
  error?: string;
  progress?: { stage: string; epoch?: number };
}

function attemptLog(stepDir: string, attempt: number): LogLine[] {
  return readFileSync(join(stepDir, 'logs', `attempt-${attempt}.log`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine);
}

/** The lines of the attempts that started after `since` (resume: the step's next attempt). */
function attemptsSince(stepDir: string, since: number): LogLine[] {
  return readdirSync(join(stepDir, 'logs'))
    .map((name) => Number(/^attempt-(\d+)\.log$/.exec(name)?.[1]))
    .filter((n) => n > 0)
    .map((n) => attemptLog(stepDir, n))
    .filter((lines) => lines.length > 0 && Date.parse(lines[0].time) > since)
    .flat();
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-cli-interrupt-'));
  stateDir = join(dir, 'state');
  runDir = join(dir, 'runs', PIPELINE, RUN_ID);
  // The Web UI listens on port + 1000: both must be free.
  do {
    port = await freePort();
  } while (await isPortOpen(`127.0.0.1:${port + 1000}`));
  // 16 good training images: 13 train / 3 val, 4 batches of 4 per epoch.
  const data = { size: 32, categories: CATEGORIES, trainGood: 16, testGood: 4, perDefect: 1 };
  await synthesizeDataset(join(dir, 'data'), data);
  // pipelines/quick.yaml with tiny training. Its steps as they are: train's heartbeat timeout is
  // 2 minutes, which a resume must not have to wait for (it would run past the test's timeout).
  const quick = parseYaml(readFileSync(join(REPO_ROOT, 'pipelines', 'quick.yaml'), 'utf8')) as {
    steps: Array<{ name: string }>;
  };
  stepNames = quick.steps.map((step) => step.name);
  const pipeline = {
    ...quick,
    name: PIPELINE,
    training: {
      image_size: 32,
      epochs: EPOCHS,
      batch_size: 4,
      model: { widths: [4, 8] },
      early_stopping: { patience: 1000 },
      checkpoint: { every_epochs: 1, keep_last: 2 },
    },
  };
  writeFileSync(join(dir, `${PIPELINE}.yaml`), stringifyYaml(pipeline));
});

afterAll(async () => {
  // Only after a failure: whatever the CLIs left behind (their groups; the server has its own).
  const kill = (pid: number): void => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  for (const child of started) if (child.pid) kill(-child.pid);
  if (stateDir) for (const pid of pidsMentioning(join(stateDir, 'temporal.db'))) kill(pid);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('pipeline CLI: Ctrl-C, then resume', () => {
  it('checkpoints and stops everything on Ctrl-C; resume finishes from the checkpoint, reusing finished steps', async () => {
    const first = startCli([
      '--pipeline',
      join(dir, `${PIPELINE}.yaml`),
      '--data-root',
      join(dir, 'data'),
      '--runs-root',
      join(dir, 'runs'),
      '--run-id',
      RUN_ID,
      '--train-slots',
      '2',
      '--no-progress',
    ]);
    // Both categories train at once: wait until each has a checkpoint and neither has finished.
    // Checkpoint folders appear by rename, so one that is listed is complete. Not epoch-0001 of both at
    // the same moment: keep_last thins it away within two epochs, and the categories need not start
    // together (the first to train gets the idle slot's cores until the other starts).
    const training = (c: string) =>
      !existsSync(join(runDir, c, 'train', 'result.json')) &&
      (existsSync(join(runDir, c, 'train', 'checkpoints'))
        ? readdirSync(join(runDir, c, 'train', 'checkpoints')).some((n) => /^epoch-\d{4}$/.test(n))
        : false);
    await waitFor(
      'a checkpoint of every category while both train',
      () => CATEGORIES.every(training),
      75_000,
      first,
    );
    const preprocessBefore = CATEGORIES.map((c) => {
      const file = join(runDir, c, 'preprocess', 'result.json');
      return { text: readFileSync(file, 'utf8'), mtimeMs: statSync(file).mtimeMs };
    });

    const interruptedAt = Date.now();
    process.kill(-groupOf(first), 'SIGINT');
    const interrupted = await first.exited;
    expect({ ...interrupted, stderr: first.stderr() }).toMatchObject({ code: 130, signal: null });
    expect(first.stderr()).toContain(`resume ${RUN_ID}`);
    await expectNothingLeft(first, 'Ctrl-C');

    // Each training attempt saved its state on the way out (a complete checkpoint, no half-written one).
    const savedAt = new Map<string, string>();
    for (const category of CATEGORIES) {
      const stepDir = join(runDir, category, 'train');
      const log = attemptLog(stepDir, 1);
      expect(log.some((l) => l.msg === 'attempt finished')).toBe(false);
      const failed = log.find((l) => l.msg === 'attempt failed');
      const saved = /training cancelled; state saved in (\S+)/.exec(failed?.error ?? '')?.[1];
      expect(saved, `${category}: ${failed?.error}`).toMatch(/checkpoints\/epoch-\d{4}$/);
      expect(await verifyCheckpoint(saved ?? '')).toBeNull();
      expect(readdirSync(join(stepDir, 'checkpoints')).filter((n) => n.startsWith('.'))).toEqual([]);
      savedAt.set(category, relative(runDir, saved ?? ''));
    }

    const resumed = startCli(['resume', RUN_ID, '--train-slots', '2', '--no-progress']);
    const done = await resumed.exited;
    expect({ ...done, stderr: resumed.stderr() }).toMatchObject({ code: 0, signal: null });
    for (const category of CATEGORIES) {
      expect(resumed.stdout()).toMatch(
        new RegExp(`${category}\\s+completed\\s+${stepNames.length}/${stepNames.length}`),
      );
    }
    expect(resumed.stdout()).toContain(`${CATEGORIES.length}/${CATEGORIES.length} categories completed`);
    await expectNothingLeft(resumed, 'resume');

    for (const [i, category] of CATEGORIES.entries()) {
      // Finished before Ctrl-C: not run again (one attempt, result.json untouched).
      const preprocessDir = join(runDir, category, 'preprocess');
      const file = join(preprocessDir, 'result.json');
      expect({ text: readFileSync(file, 'utf8'), mtimeMs: statSync(file).mtimeMs }).toEqual(
        preprocessBefore[i],
      );
      expect(readdirSync(join(preprocessDir, 'logs'))).toEqual(['attempt-1.log']);
      expect(attemptLog(preprocessDir, 1).filter((l) => l.msg === 'attempt started')).toHaveLength(1);

      // Training continued from the checkpoint Ctrl-C wrote, to the configured epoch count.
      const stepDir = join(runDir, category, 'train');
      const metadata = readJson<{ resumedFrom: string | null }>(join(stepDir, 'metadata.json'));
      expect(metadata.resumedFrom).toBe(savedAt.get(category));
      expect(readJson<StepResult>(join(stepDir, 'result.json')).summary.resumedFrom).toBe(
        savedAt.get(category),
      );
      const history = readJson<Array<{ epoch: number }>>(join(stepDir, 'history.json'));
      expect(history.map((h) => h.epoch)).toEqual(Array.from({ length: EPOCHS }, (_, e) => e + 1));
      const resumedEpochs = attemptsSince(stepDir, interruptedAt)
        .filter(
          (l) => l.msg === 'progress' && l.progress?.stage === 'train' && l.progress.epoch !== undefined,
        )
        .map((l) => l.progress?.epoch ?? 0);
      expect(resumedEpochs.length).toBeGreaterThan(0);
      expect(Math.min(...resumedEpochs), 'first epoch trained after resume').toBeGreaterThanOrEqual(2);

      for (const step of stepNames)
        expect(existsSync(join(runDir, category, step, 'result.json'))).toBe(true);
    }
    expect(existsSync(join(runDir, 'summary', 'summary.json'))).toBe(true);
  });
});
