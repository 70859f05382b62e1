/**
 * The worker supervisor (npm run worker's process layout: the CPU worker in-process, a training
 * child per GPU slot) against a REAL dev server: a training child killed with SIGKILL is
 * restarted with the same GPU index, and the activity it was running is failed at once by its task
 * token (reported by the child over IPC), so the retry starts within seconds although the step's
 * heartbeat timeout is a minute. A child that keeps crashing is restarted with backoff, then given up.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipelineRun } from '../temporal/runs';
import { SUPERVISOR_ENV } from '../temporal/worker-supervisor';
import { testPlan } from './support/plans';
import { startTestServer, type TestServer } from './support/temporal-server';

const TEST_WORKER = join(process.cwd(), 'test', 'support', 'test-worker.ts');

let server: TestServer;
let clientConnection: Connection;
let client: Client;
let runsRoot: string;
const supervisors: ChildProcess[] = [];

interface Supervised {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

function spawnSupervisor(args: string[], env: NodeJS.ProcessEnv = {}): Supervised {
  const child = spawn(process.execPath, ['--import', 'tsx', TEST_WORKER, ...args], {
    env: { ...process.env, TEMPORAL_ADDRESS: server.address, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  supervisors.push(child);
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log: () => log, exited };
}

function trainPids(log: string, label: string): number[] {
  return [...log.matchAll(new RegExp(`started training worker ${label} \\(pid (\\d+)`, 'g'))].map((m) =>
    Number(m[1]),
  );
}

function envOf(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

function jsonLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

async function waitFor(what: string, fn: () => boolean, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  runsRoot = mkdtempSync(join(tmpdir(), 'anomaly-supervision-'));
  server = await startTestServer();
  clientConnection = await Connection.connect({ address: server.address });
  client = new Client({ connection: clientConnection });
});

afterAll(async () => {
  for (const c of supervisors) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await clientConnection?.close();
  await server?.dispose();
  rmSync(runsRoot, { recursive: true, force: true });
});

describe('worker supervision on a real dev server', () => {
  it('restarts a SIGKILLed training child on the same GPU and fails its activity at once (no heartbeat timeout wait)', async () => {
    const sup = spawnSupervisor(['--gpus', '3']);
    await waitFor('the training child', () => trainPids(sup.log(), 'gpu3').length === 1);
    const plan = testPlan({
      runsRoot,
      steps: [
        {
          name: 'train',
          activity: 'train',
          queue: 'gpu',
          // A minute: a retry within seconds can only come from the supervisor failing the task.
          heartbeatTimeoutMs: 60_000,
          maximumAttempts: 3,
          params: { epochs: 12, epochMs: 300 },
        },
      ],
    });
    const stepDir = join(plan.runDir, 'bottle', 'train');
    const handle = await startPipelineRun(client, plan);
    await waitFor('epoch 3', () =>
      jsonLines<{ epoch: number }>(join(stepDir, 'epochs.jsonl')).some((e) => e.epoch >= 3),
    );
    const [firstPid] = trainPids(sup.log(), 'gpu3');
    expect(envOf(firstPid).CUDA_VISIBLE_DEVICES).toBe('3');
    process.kill(firstPid, 'SIGKILL');
    const killedAt = Date.now();

    const summary = await handle.result();
    expect(summary.status).toBe('completed');
    const pids = trainPids(sup.log(), 'gpu3');
    expect(pids).toHaveLength(2);
    expect(sup.log()).toMatch(/training worker gpu3 exited \(SIGKILL\); restarting in 1\.0 s/);
    expect(sup.log()).toMatch(
      /failed activity train \S+ \(attempt 1\) of \S+ of the dead worker gpu3 at once/,
    );
    expect(sup.log()).toContain(`started training worker gpu3 (pid ${pids[1]}, CUDA_VISIBLE_DEVICES=3)`);
    // The replacement has the same GPU index.
    expect(envOf(pids[1]).CUDA_VISIBLE_DEVICES).toBe('3');

    const started = jsonLines<{ msg: string; time: string; previousProgress?: { epoch?: number } }>(
      join(stepDir, 'logs', 'attempt-2.log'),
    ).find((l) => l.msg === 'attempt started');
    expect(started).toBeDefined();
    const retryAfterMs = Date.parse(started?.time ?? '') - killedAt;
    // Restart backoff (1 s) + a new child's start; far below the 60 s heartbeat timeout.
    expect(retryAfterMs).toBeLessThan(30_000);
    console.log(`retry of the killed training attempt started ${retryAfterMs} ms after SIGKILL`);
    const epochs = jsonLines<{ epoch: number; pid: number; attempt: number }>(join(stepDir, 'epochs.jsonl'));
    const bySecond = epochs.filter((e) => e.pid === pids[1]);
    // Resumed from the checkpoint, not from epoch 1.
    expect(bySecond[0].epoch).toBeGreaterThan(3);
    expect(bySecond.at(-1)?.epoch).toBe(12);

    sup.child.kill('SIGTERM');
    expect(await sup.exited).toBe(0);
  });

  it('restarts a crashing child with growing backoff, then gives up and exits non-zero', async () => {
    const sup = spawnSupervisor(['--train-slots', '1'], {
      TEST_WORKER_CRASH_TRAIN: '1',
      [SUPERVISOR_ENV.maxRestarts]: '2',
      [SUPERVISOR_ENV.initialBackoffMs]: '300',
    });
    const code = await sup.exited;
    const log = sup.log();
    expect(log).toMatch(
      /training worker train0 exited \(exit code 3\); restarting in 0\.3 s \(restart 1 of at most 2/,
    );
    expect(log).toMatch(
      /training worker train0 exited \(exit code 3\); restarting in 0\.6 s \(restart 2 of at most 2/,
    );
    expect(log).toMatch(/restarted 2 times in 600 s: giving up/);
    expect(trainPids(log, 'train0')).toHaveLength(3);
    expect(code).not.toBe(0);
  });
});
