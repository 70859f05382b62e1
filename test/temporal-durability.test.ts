/**
 * Durability against a REAL dev server: a training worker PROCESS killed with SIGKILL mid-step
 * (the retry lands on a new process and resumes from the checkpoint), and a server restart on the
 * same SQLite file in the middle of a run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipelineRun } from '../temporal/runs';
import { createRoleWorker } from '../temporal/worker-runtime';
import { testPlan } from './support/plans';
import { startTestServer, type TestServer } from './support/temporal-server';
import { TEST_STEPS, testSummary } from './support/test-steps';

Runtime.install({ logger: new DefaultLogger('ERROR') });

const TEST_WORKER = join(process.cwd(), 'test', 'support', 'test-worker.ts');

let server: TestServer;
let workerConnection: NativeConnection;
let clientConnection: Connection;
let client: Client;
let cpuWorker: Worker;
let cpuRun: Promise<void>;
let runsRoot: string;
const children: ChildProcess[] = [];

function spawnTrainWorker(): ChildProcess {
  // `node --import tsx` (not the tsx launcher) so that child.pid IS the worker: SIGKILL reaches it.
  const log = openSync(join(server.dir, 'train-workers.log'), 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', TEST_WORKER, '--role', 'train'], {
    env: { ...process.env, TEMPORAL_ADDRESS: server.address },
    stdio: ['ignore', log, log],
  });
  children.push(child);
  return child;
}

interface EpochLine {
  epoch: number;
  pid: number;
  attempt: number;
}

function readEpochs(stepDir: string): EpochLine[] {
  const file = join(stepDir, 'epochs.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EpochLine);
}

async function waitFor(what: string, fn: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  runsRoot = mkdtempSync(join(tmpdir(), 'anomaly-runs-'));
  server = await startTestServer();
  workerConnection = await NativeConnection.connect({ address: server.address });
  cpuWorker = await createRoleWorker(
    workerConnection,
    'default',
    { steps: TEST_STEPS, summary: testSummary },
    { role: 'cpu', cpuSlots: 4 },
  );
  cpuRun = cpuWorker.run();
  clientConnection = await Connection.connect({ address: server.address });
  client = new Client({ connection: clientConnection });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (cpuWorker?.getState() === 'RUNNING') cpuWorker.shutdown();
  await cpuRun?.catch(() => {});
  await clientConnection?.close();
  await workerConnection?.close();
  await server?.dispose();
  rmSync(runsRoot, { recursive: true, force: true });
});

describe('durability on a real dev server', () => {
  it('a killed training worker process is replaced and the step resumes from its checkpoint', async () => {
    const plan = testPlan({
      runsRoot,
      steps: [
        { name: 'prep', activity: 'preprocess' },
        {
          name: 'train',
          activity: 'train',
          needs: ['prep'],
          queue: 'gpu',
          heartbeatTimeoutMs: 1500,
          maximumAttempts: 3,
          params: { epochs: 10, epochMs: 300 },
        },
      ],
    });
    const stepDir = join(plan.runDir, 'bottle', 'train');
    const first = spawnTrainWorker();
    const handle = await startPipelineRun(client, plan);
    // Past epoch 5 (1.5 s): the SDK sends heartbeats at most every 0.8 x heartbeat timeout, so by
    // now the server holds details of a recent epoch.
    await waitFor('epoch 5 of the first worker', () => readEpochs(stepDir).some((e) => e.epoch >= 5));
    first.kill('SIGKILL');
    const killedAt = Date.now();
    const second = spawnTrainWorker();

    const summary = await handle.result();
    expect(summary.status).toBe('completed');
    const epochs = readEpochs(stepDir);
    const byFirst = epochs.filter((e) => e.pid === first.pid);
    const bySecond = epochs.filter((e) => e.pid === second.pid);
    expect(byFirst.length).toBeGreaterThanOrEqual(5);
    expect(bySecond.length).toBeGreaterThan(0);
    // Resumed after the last checkpoint of the killed process, not from epoch 1.
    expect(bySecond[0].epoch).toBe(Math.max(...byFirst.map((e) => e.epoch)) + 1);
    expect(bySecond.at(-1)?.epoch).toBe(10);
    expect(bySecond[0].attempt).toBe(2);
    const result = summary.categories[0].results.train;
    expect(result.summary.resumedFromEpoch).toBeGreaterThanOrEqual(5);
    // The retry saw the previous attempt's heartbeat details.
    const started = readFileSync(join(stepDir, 'logs', 'attempt-2.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === 'attempt started');
    expect(started.previousProgress).toMatchObject({ stage: 'train', totalEpochs: 10 });
    expect(started.previousProgress.epoch).toBeGreaterThanOrEqual(1);
    // Promptly: heartbeat timeout (1.5 s) + retry interval + worker start, not the 60 s start-to-close.
    expect(Date.parse(result.finishedAt) - killedAt).toBeLessThan(20_000);
    second.kill('SIGTERM');
  });

  it('SIGTERM stops a training worker gracefully: the step is cancelled, retried at once elsewhere, and resumes', async () => {
    const plan = testPlan({
      runsRoot,
      steps: [
        {
          name: 'train',
          activity: 'train',
          queue: 'gpu',
          // Long heartbeat timeout: a prompt retry here comes from the cancelled attempt failing,
          // not from the server noticing a dead worker.
          heartbeatTimeoutMs: 30_000,
          maximumAttempts: 3,
          params: { epochs: 8, epochMs: 300 },
        },
      ],
    });
    const stepDir = join(plan.runDir, 'bottle', 'train');
    const first = spawnTrainWorker();
    const firstExit = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));
    const handle = await startPipelineRun(client, plan);
    await waitFor('epoch 2', () => readEpochs(stepDir).some((e) => e.epoch >= 2));
    first.kill('SIGTERM');
    const stoppedAt = Date.now();
    expect(await firstExit).toBe(0);
    const second = spawnTrainWorker();
    const summary = await handle.result();
    expect(summary.status).toBe('completed');
    const failedLine = readFileSync(join(stepDir, 'logs', 'attempt-1.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === 'attempt failed');
    expect(failedLine.error).toMatch(/WORKER_SHUTDOWN/);
    const bySecond = readEpochs(stepDir).filter((e) => e.pid === second.pid);
    expect(bySecond[0].epoch).toBeGreaterThan(1);
    expect(Date.parse(summary.categories[0].results.train.finishedAt) - stoppedAt).toBeLessThan(20_000);
    second.kill('SIGTERM');
  });

  it('survives a dev server restart (same SQLite file) in the middle of a run', async () => {
    const plan = testPlan({
      runsRoot,
      categories: ['bottle', 'cable'],
      steps: [
        { name: 'prep', activity: 'preprocess' },
        {
          name: 'train',
          activity: 'train',
          needs: ['prep'],
          queue: 'cpu',
          heartbeatTimeoutMs: 3000,
          maximumAttempts: 5,
          params: { epochs: 10, epochMs: 300 },
        },
        { name: 'rep', activity: 'report', needs: ['train'] },
      ],
    });
    const handle = await startPipelineRun(client, plan);
    await waitFor('epoch 2', () =>
      readEpochs(join(plan.runDir, 'bottle', 'train')).some((e) => e.epoch >= 2),
    );
    await server.stop();
    await new Promise((r) => setTimeout(r, 1000));
    await server.restart();
    const summary = await handle.result();
    expect(summary.status).toBe('completed');
    expect(summary.categories.map((c) => c.status)).toEqual(['completed', 'completed']);
    expect(existsSync(join(plan.runDir, 'summary.json'))).toBe(true);
  });
});
