/**
 * The whole pipeline with the REAL steps (lib/registry STEPS + summaryStep) and the real worker.ts
 * supervisor process against a real dev server: a tiny synthetic dataset (32 px, 2 categories), a
 * tiny U-Net-lite, a pipeline YAML written here. Then durability with the real trainer: the training
 * worker process is SIGKILLed after its first checkpoint; the supervisor starts a new one and the
 * train step's next attempt resumes from that checkpoint instead of epoch 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  type WriteStream,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import type { RunPlan } from '../lib/pipeline/plan';
import type { StepResult } from '../lib/steps/contracts';
import { startPipelineRun } from '../temporal/runs';
import { startTestServer, type TestServer } from './support/temporal-server';
import { E2E_STEPS_AFTER_TRAIN, tinyE2eDataset } from './support/train-fixtures';

const CATEGORIES = ['weave', 'chip'];
const STEP_NAMES = ['preprocess', 'train', 'validate', 'checkpoint', 'threshold', 'report', 'package'];
const EPOCHS = 3;
const WORKER_ENTRY = join(process.cwd(), 'worker.ts');

let server: TestServer;
let dir: string;
let connection: Connection;
let client: Client;
let supervisor: ChildProcess;
let workerLog: WriteStream;
/** Training worker child pids in start order, read from the supervisor's "started training worker" lines. */
const trainWorkerPids: number[] = [];

type Kind = 'autoencoder' | 'patchcore' | 'draem';

/** The tiny pipeline: every real step, short train heartbeat so a dead worker is noticed in seconds. */
function pipelineYaml(epochs: number, kind: Kind = 'autoencoder'): string {
  return [
    'name: e2e',
    'dataset: { root: data, categories: all }',
    'concurrency: 2',
    'defaults:',
    '  queue: cpu',
    '  retry: { maximum_attempts: 2, initial_interval: 200ms, backoff: 1, maximum_interval: 1s }',
    '  start_to_close: 5m',
    '  heartbeat: 30s',
    'training:',
    '  image_size: 32',
    `  epochs: ${epochs}`,
    '  batch_size: 4',
    kind === 'patchcore'
      ? '  model: { kind: patchcore, patchcore: { coreset_ratio: 0.5 } }'
      : kind === 'draem'
        ? // ~10 ms a step here: 400 steps leave seconds for the kill after the first checkpoint.
          '  model: { kind: draem, draem: { recon_widths: [4, 8], disc_widths: [4, 8], batch_size: 4, steps: 400, checkpoint_every: 20 } }'
        : '  model: { widths: [4, 8] }',
    // Exactly `epochs` epochs must run; keep every checkpoint so the test can see them.
    '  early_stopping: { patience: 100 }',
    '  checkpoint: { every_epochs: 1, keep_last: 10 }',
    'steps:',
    '  - { name: preprocess, activity: preprocess }',
    '  - name: train',
    '    activity: train',
    '    needs: [preprocess]',
    '    resources: { gpu: 1 }',
    '    heartbeat: 5s',
    '    retry: { maximum_attempts: 4 }',
    ...E2E_STEPS_AFTER_TRAIN,
    '',
  ].join('\n');
}

async function planFor(
  name: string,
  epochs: number,
  categories: string[],
  kind: Kind = 'autoencoder',
): Promise<RunPlan> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, pipelineYaml(epochs, kind));
  return buildRunPlan({ pipelinePath: file, runsRoot: join(dir, 'runs'), runId: name, categories });
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

interface AttemptLogLine {
  msg: string;
  pid?: number;
  progress?: { stage: string; epoch?: number; checkpoint?: string };
  summary?: Record<string, unknown>;
}

function attemptLog(stepDir: string, attempt: number): AttemptLogLine[] {
  return readFileSync(join(stepDir, 'logs', `attempt-${attempt}.log`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AttemptLogLine);
}

async function waitFor(what: string, ready: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // Short poll: the kill must land while training is still running.
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-e2e-'));
  await tinyE2eDataset(join(dir, 'data'), CATEGORIES);
  server = await startTestServer();
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection });
  workerLog = createWriteStream(join(dir, 'workers.log'));
  const { MLFLOW_TRACKING_URI: _noMlflow, ...env } = process.env;
  // The real supervisor: CPU worker (workflows + light steps) in-process, one training child process.
  // `node --import tsx` so the supervisor's own pid is the process we signal.
  supervisor = spawn(process.execPath, ['--import', 'tsx', WORKER_ENTRY, '--train-slots', '1'], {
    env: { ...env, TEMPORAL_ADDRESS: server.address, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  supervisor.stdout?.pipe(workerLog, { end: false });
  let pending = '';
  supervisor.stderr?.on('data', (chunk: Buffer) => {
    workerLog.write(chunk);
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const started = /started training worker \S+ \(pid (\d+)\)/.exec(line);
      if (started) trainWorkerPids.push(Number(started[1]));
    }
  });
});

afterAll(async () => {
  let supervisorForceKilled = false;
  if (supervisor && supervisor.exitCode === null && supervisor.signalCode === null) {
    const exited = new Promise<void>((resolve) => supervisor.once('exit', () => resolve()));
    // SIGTERM: the supervisor stops its training child and waits for it before exiting.
    supervisor.kill('SIGTERM');
    const timer = setTimeout(() => {
      supervisorForceKilled = true;
      supervisor.kill('SIGKILL');
    }, 30_000);
    await exited;
    clearTimeout(timer);
  }
  // Only a force-killed supervisor leaves its current training child behind. Never signal older
  // pids: those processes are gone and their pids may belong to someone else by now.
  const currentChild = trainWorkerPids.at(-1);
  if (supervisorForceKilled && currentChild !== undefined) {
    try {
      process.kill(currentChild, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  workerLog?.end();
  await connection?.close();
  await server?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('pipeline end to end with the real steps and worker.ts', () => {
  it('trains, evaluates and reports both categories and writes the summary', async () => {
    const plan = await planFor('full', EPOCHS, CATEGORIES);
    const handle = await startPipelineRun(client, plan);
    const summary = await handle.result();

    // The failure (if any) in the comparison makes a failing run say why.
    expect(summary.categories.map((c) => [c.category, c.status, c.failure?.message ?? null])).toEqual(
      CATEGORIES.map((c) => [c, 'completed', null]),
    );
    expect(summary.status).toBe('completed');
    for (const category of CATEGORIES) {
      for (const step of STEP_NAMES) {
        const result = readJson<StepResult>(join(plan.runDir, category, step, 'result.json'));
        expect(result).toMatchObject({ step, category, activity: step });
        for (const output of result.outputs) expect(existsSync(join(plan.runDir, output.path))).toBe(true);
      }
      const history = readJson<Array<{ epoch: number }>>(
        join(plan.runDir, category, 'train', 'history.json'),
      );
      expect(history.map((h) => h.epoch)).toEqual([1, 2, 3]);
      const report = readJson<{ image: { auroc: { value: number | null; reason?: string } } }>(
        join(plan.runDir, category, 'report', 'report.json'),
      );
      expect(report.image.auroc.reason).toBeUndefined();
      expect(report.image.auroc.value).toBeGreaterThanOrEqual(0);
      expect(report.image.auroc.value).toBeLessThanOrEqual(1);
      for (const file of ['report.md', 'report.html']) {
        expect(existsSync(join(plan.runDir, category, 'report', file))).toBe(true);
      }
    }
    for (const file of ['summary.md', 'summary.html', 'summary.json']) {
      expect(existsSync(join(plan.runDir, 'summary', file))).toBe(true);
    }
  });

  it('a training worker killed after its first checkpoint is replaced and the step resumes from it', async () => {
    // After epoch 1 an epoch takes ~0.5 s here: 7 more epochs leave the kill seconds of margin
    // even on a loaded machine (the test polls every 25 ms).
    const epochs = 8;
    const plan = await planFor('durable', epochs, ['weave']);
    const stepDir = join(plan.runDir, 'weave', 'train');
    const firstCheckpoint = join(stepDir, 'checkpoints', 'epoch-0001');
    const handle = await startPipelineRun(client, plan);

    // The checkpoint folder appears by rename, so its existence means it is complete.
    await waitFor('the first training checkpoint', () => existsSync(firstCheckpoint), 60_000);
    const killedPid = trainWorkerPids.at(-1);
    if (killedPid === undefined) throw new Error('no training worker pid seen in the supervisor output');
    process.kill(killedPid, 'SIGKILL');
    const workersBefore = trainWorkerPids.length;

    const summary = await handle.result();
    expect(summary.categories[0].failure?.message ?? null).toBeNull();
    expect(summary.status).toBe('completed');
    // The supervisor replaced the dead child with a new process.
    expect(trainWorkerPids.length).toBeGreaterThan(workersBefore);

    const first = attemptLog(stepDir, 1);
    expect(first.find((l) => l.msg === 'attempt started')?.pid).toBe(killedPid);
    expect(
      first.some((l) => l.msg === 'attempt finished'),
      'the first attempt finished training before the kill landed',
    ).toBe(false);

    const second = attemptLog(stepDir, 2);
    const secondPid = second.find((l) => l.msg === 'attempt started')?.pid;
    expect(secondPid).toBeDefined();
    expect(secondPid).not.toBe(killedPid);
    // Resumed after a checkpoint of the killed attempt: its first epoch is past 1, never epoch 1 again.
    const trainedEpochs = second
      .filter((l) => l.msg === 'progress' && l.progress?.stage === 'train' && l.progress.epoch !== undefined)
      .map((l) => l.progress?.epoch ?? 0);
    expect(trainedEpochs.length).toBeGreaterThan(0);
    expect(Math.min(...trainedEpochs)).toBeGreaterThanOrEqual(2);
    const finished = second.find((l) => l.msg === 'attempt finished');
    const resumedFrom = String(finished?.summary?.resumedFrom ?? '');
    const resumedEpoch = Number(/checkpoints\/epoch-(\d{4})$/.exec(resumedFrom)?.[1]);
    expect(resumedEpoch).toBeGreaterThanOrEqual(1);
    expect(resumedEpoch).toBeLessThan(epochs);
    expect(Math.min(...trainedEpochs)).toBe(resumedEpoch + 1);

    // One record per configured epoch, none repeated or lost across the crash.
    const history = readJson<Array<{ epoch: number }>>(join(stepDir, 'history.json'));
    expect(history.map((h) => h.epoch)).toEqual(Array.from({ length: epochs }, (_, i) => i + 1));
    const result = readJson<StepResult>(join(stepDir, 'result.json'));
    expect(result.summary.resumedFrom).toBe(resumedFrom);
    expect(existsSync(join(plan.runDir, 'weave', 'report', 'report.json'))).toBe(true);
  });

  it('a DRAEM training worker killed after its first checkpoint resumes from it, and the package serves', async () => {
    const plan = await planFor('draem', 1, ['weave'], 'draem');
    const stepDir = join(plan.runDir, 'weave', 'train');
    const handle = await startPipelineRun(client, plan);
    // The state file is renamed into place last: its existence means the checkpoint is complete.
    await waitFor(
      'the first DRAEM checkpoint',
      () => existsSync(join(stepDir, 'checkpoints', 'step-000020', 'state.json')),
      60_000,
    );
    const killedPid = trainWorkerPids.at(-1);
    if (killedPid === undefined) throw new Error('no training worker pid seen in the supervisor output');
    process.kill(killedPid, 'SIGKILL');
    const summary = await handle.result();
    expect(summary.categories.map((c) => [c.category, c.status, c.failure?.message ?? null])).toEqual([
      ['weave', 'completed', null],
    ]);
    expect(attemptLog(stepDir, 1).some((l) => l.msg === 'attempt finished')).toBe(false);
    const train = readJson<StepResult>(join(stepDir, 'result.json'));
    expect(train.summary).toMatchObject({ modelKind: 'draem', stepsRun: 400 });
    expect(String(train.summary.resumedFrom)).toMatch(/train\/checkpoints\/step-\d{6}$/);
    // One history record per 10 steps, none repeated or lost across the crash.
    const history = readJson<Array<{ step: number }>>(join(stepDir, 'history.json'));
    expect(history.map((h) => h.step)).toEqual(Array.from({ length: 40 }, (_, i) => (i + 1) * 10));
    const { loadServedModels } = await import('../lib/serve/models');
    const { models } = await loadServedModels(plan.runDir);
    expect(models.map((m) => [m.category, m.pkg.metadata.architecture.name])).toEqual([['weave', 'draem']]);
  });

  it('runs a PatchCore pipeline end to end (fit, validate, package) and the package serves', async () => {
    const plan = await planFor('patchcore', 1, ['weave'], 'patchcore');
    const summary = await (await startPipelineRun(client, plan)).result();
    expect(summary.categories.map((c) => [c.category, c.status, c.failure?.message ?? null])).toEqual([
      ['weave', 'completed', null],
    ]);
    const train = readJson<StepResult>(join(plan.runDir, 'weave', 'train', 'result.json'));
    expect(train.summary).toMatchObject({ modelKind: 'patchcore', backbone: 'efficientnet-lite2' });
    const report = readJson<{ image: { auroc: { value: number | null } } }>(
      join(plan.runDir, 'weave', 'report', 'report.json'),
    );
    expect(report.image.auroc.value).toBeGreaterThanOrEqual(0);
    const { loadServedModels } = await import('../lib/serve/models');
    const { models } = await loadServedModels(plan.runDir);
    expect(models.map((m) => [m.category, m.pkg.metadata.architecture.name])).toEqual([
      ['weave', 'patchcore'],
    ]);
  });
});
