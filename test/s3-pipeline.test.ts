/**
 * A pipeline run kept in object storage (`--runs-root s3://...`), on two hosts that share nothing
 * but the Temporal dev server and the bucket (the dataset is in the bucket too): two real worker.ts supervisors, each in its own
 * working directory with its own cache and run mirror, against a real SeaweedFS S3 server.
 * The worker that trains is killed (-9, the whole process group: the host is gone) after its first
 * checkpoint reaches the bucket; the other worker's training resumes from that checkpoint, fetched
 * from the bucket. Then the packages are served from the bucket; a nightly-style pipeline promotes
 * through a pointer in the bucket, and a running server follows a rollback made there.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelPackage } from '../lib/package/package';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import { mirrorRemoteModels } from '../lib/serve/remote-models';
import { startServer } from '../lib/serve/start';
import type { StepResult } from '../lib/steps/contracts';
import { openStore } from '../lib/store/open';
import { publishDir } from '../lib/store/publish';
import type { ArtifactStore } from '../lib/store/types';
import { startPipelineRun } from '../temporal/runs';
import { startS3Server, type TestS3Server } from './support/s3-server';
import { startTestServer, type TestServer } from './support/temporal-server';
import { useWasm } from './support/tiny-package';
import { E2E_STEPS_AFTER_TRAIN, tinyE2eDataset } from './support/train-fixtures';

const REPO = join(import.meta.dirname, '..');
const TSX = pathToFileURL(join(REPO, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const EPOCHS = 8;
const CATEGORIES = ['weave', 'chip'];

interface Host {
  name: string;
  dir: string;
  workDir: string;
  proc: ChildProcess;
}

let temporal: TestServer;
let s3: TestS3Server;
let dir: string;
let connection: Connection;
let client: Client;
let runs: ArtifactStore;
const hosts: Host[] = [];

function pipelineYaml(name = 's3e2e', epochs = EPOCHS, extraSteps: string[] = []): string {
  return [
    `name: ${name}`,
    'dataset: { root: data, categories: all }',
    'concurrency: 2',
    'defaults:',
    '  queue: cpu',
    '  retry: { maximum_attempts: 4, initial_interval: 200ms, backoff: 1, maximum_interval: 1s }',
    '  start_to_close: 5m',
    // A dead host's steps are noticed within seconds, whichever step it was running.
    '  heartbeat: 5s',
    'training:',
    '  image_size: 32',
    `  epochs: ${epochs}`,
    '  batch_size: 4',
    '  model: { widths: [4, 8] }',
    '  early_stopping: { patience: 100 }',
    '  checkpoint: { every_epochs: 1, keep_last: 10 }',
    'steps:',
    '  - { name: preprocess, activity: preprocess }',
    '  - { name: train, activity: train, needs: [preprocess], resources: { gpu: 1 } }',
    ...E2E_STEPS_AFTER_TRAIN,
    ...extraSteps,
    '',
  ].join('\n');
}

/** A plan of one of this file's pipelines, its runs and its dataset in the bucket. */
function bucketPlan(pipeline: string, runId: string, categories: string[], noCache = false) {
  return buildRunPlan({
    pipelinePath: join(dir, `${pipeline}.yaml`),
    dataRoot: 's3://fleet/datasets/tiny',
    runsRoot: 's3://fleet/runs',
    runId,
    categories,
    noCache,
  });
}

/** A worker host: its own folder (cwd), cache and run mirror; its own process group. */
function startHost(name: string): Host {
  const hostDir = join(dir, name);
  mkdirSync(hostDir, { recursive: true });
  const workDir = join(hostDir, 'work');
  const { MLFLOW_TRACKING_URI: _noMlflow, ...env } = process.env;
  const log = createWriteStream(join(dir, `${name}.log`));
  const proc = spawn(process.execPath, ['--import', TSX, join(REPO, 'worker.ts'), '--train-slots', '1'], {
    cwd: hostDir,
    env: {
      ...env,
      TEMPORAL_ADDRESS: temporal.address,
      ANOMALY_SPOTTER_CACHE_DIR: join(hostDir, 'cache'),
      ANOMALY_SPOTTER_WORK_DIR: workDir,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  proc.stdout?.pipe(log, { end: false });
  proc.stderr?.pipe(log, { end: false });
  const host = { name, dir: hostDir, workDir, proc };
  hosts.push(host);
  return host;
}

function killHost(host: Host): void {
  try {
    // The whole group: the supervisor and its training child, as when the machine dies.
    process.kill(-(host.proc.pid as number), 'SIGKILL');
  } catch {
    // already gone
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface AttemptLine {
  msg: string;
  pid?: number;
  host?: string;
  checkpoints?: string[];
  downloaded?: number;
  progress?: { stage: string; epoch?: number };
  summary?: Record<string, unknown>;
}

const parseLog = (text: string): AttemptLine[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AttemptLine);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-s3-e2e-'));
  await tinyE2eDataset(join(dir, 'data'), CATEGORIES);
  writeFileSync(join(dir, 's3e2e.yaml'), pipelineYaml());
  writeFileSync(
    join(dir, 's3nightly.yaml'),
    pipelineYaml('s3nightly', 2, [
      '  - { name: promote, activity: promote, needs: [package], params: { tolerance: 0.01 } }',
    ]),
  );
  // One after the other: each picks free ports, and the other must not take them meanwhile.
  temporal = await startTestServer();
  s3 = await startS3Server();
  await s3.createBucket('fleet');
  // The AWS SDK's credential chain reads process.env; the hosts inherit it (with their own caches).
  Object.assign(process.env, s3.env(), { ANOMALY_SPOTTER_CACHE_DIR: join(dir, 'test-cache') });
  runs = openStore('s3://fleet/runs');
  // The dataset lives in the bucket too, and nowhere else: the hosts share only Temporal and S3.
  const data = openStore('s3://fleet/datasets/tiny');
  await publishDir(data, join(dir, 'data'), '');
  await data.close();
  rmSync(join(dir, 'data'), { recursive: true });
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection });
  startHost('host-a');
  startHost('host-b');
});

afterAll(async () => {
  for (const h of hosts) killHost(h);
  await runs?.close();
  await connection?.close();
  await temporal?.dispose();
  await s3?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a run in object storage on two workers that share only Temporal and the bucket', () => {
  it('fans out, survives the training host dying, and serves from the bucket', async () => {
    const plan = await bucketPlan('s3e2e', 'r1', CATEGORIES);
    expect(plan.runDir).toBe('s3://fleet/runs/s3e2e/r1');
    expect(plan.steps.every((s) => s.cache)).toBe(true);
    const handle = await startPipelineRun(client, plan);

    // The first checkpoint of weave's training reaches the bucket (its manifest is written last).
    const ckptKey = 's3e2e/r1/weave/train/checkpoints/epoch-0001/_manifest.json';
    await waitFor(
      'the first checkpoint in the bucket',
      async () => ((await runs.exists(ckptKey)) ? true : undefined),
      120_000,
    );
    const mirrorOf = (h: Host) => join(h.workDir, 'fleet', 'runs', 's3e2e', 'r1');
    const trainer = hosts.find((h) =>
      existsSync(join(mirrorOf(h), 'weave', 'train', 'logs', 'attempt-1.log')),
    );
    if (!trainer) throw new Error('no host has the first training attempt of weave');
    const survivor = hosts.find((h) => h !== trainer) as Host;
    killHost(trainer);

    const summary = await handle.result();
    expect(summary.categories.map((c) => c.failure?.message ?? null)).toEqual([null, null]);
    expect(summary.status).toBe('completed');

    // The retry ran on the surviving host, from the bucket's checkpoint, not from epoch 0.
    const retryLogs = [2, 3, 4]
      .map((n) => join(mirrorOf(survivor), 'weave', 'train', 'logs', `attempt-${n}.log`))
      .filter(existsSync);
    expect(retryLogs.length).toBeGreaterThan(0);
    const retry = parseLog(readFileSync(retryLogs.at(-1) as string, 'utf8'));
    const fetched = retry.find((l) => l.msg === 'fetched inputs from the store');
    expect(fetched?.checkpoints?.some((c) => /checkpoints\/epoch-\d{4}$/.test(c))).toBe(true);
    const epochs = retry
      .filter((l) => l.msg === 'progress' && l.progress?.stage === 'train' && l.progress.epoch !== undefined)
      .map((l) => l.progress?.epoch ?? 0);
    expect(Math.min(...epochs)).toBeGreaterThanOrEqual(2);
    const finished = retry.find((l) => l.msg === 'attempt finished');
    expect(String(finished?.summary?.resumedFrom ?? '')).toMatch(/checkpoints\/epoch-\d{4}$/);

    // Each category's preprocess synced its images from the bucket into its host's own mirror.
    for (const cat of CATEGORIES) {
      const logs = hosts.flatMap((h) =>
        [1, 2, 3]
          .map((n) => join(mirrorOf(h), cat, 'preprocess', 'logs', `attempt-${n}.log`))
          .filter(existsSync),
      );
      const synced = logs
        .flatMap((f) => parseLog(readFileSync(f, 'utf8')))
        .find((l) => l.msg === 'synced the dataset from the store');
      expect(synced?.downloaded).toBeGreaterThan(0);
    }

    // Every step of both categories is published in the bucket, results agreeing with the workflow's.
    for (const c of summary.categories) {
      for (const r of Object.values(c.results) as StepResult[]) {
        const manifest = JSON.parse(
          (await runs.getBytes(`s3e2e/r1/${r.category}/${r.step}/_manifest.json`)).toString(),
        );
        const byPath = new Map(
          (manifest.files as { path: string; sha256: string }[]).map((f) => [f.path, f.sha256]),
        );
        for (const out of r.outputs)
          expect(byPath.get(out.path.slice(`${r.category}/${r.step}/`.length))).toBe(out.sha256);
      }
    }
    // The weave history has each epoch exactly once across the crash.
    const history = JSON.parse((await runs.getBytes('s3e2e/r1/weave/train/history.json')).toString()) as {
      epoch: number;
    }[];
    expect(history.map((h) => h.epoch)).toEqual(Array.from({ length: EPOCHS }, (_, i) => i + 1));
    expect(await runs.exists('s3e2e/r1/summary/_manifest.json')).toBe(true);
    expect(await runs.exists('s3e2e/r1/plan.json')).toBe(false); // written by the CLI, not by startPipelineRun

    // Serve's loader mirrors the bucket's runs tree and loads both packages.
    const mirrored = await mirrorRemoteModels('s3://fleet/runs', { cacheDir: join(dir, 'serve-cache') });
    expect(mirrored.packages.sort()).toEqual([
      's3e2e/r1/chip/package/package',
      's3e2e/r1/weave/package/package',
    ]);
    for (const key of mirrored.packages) {
      const pkg = await loadModelPackage(join(mirrored.localPath, key));
      expect(['weave', 'chip']).toContain(pkg.metadata.category);
    }

    // The same inputs again: every step comes from the step cache in the bucket (its index beside
    // the runs), and the new run's folder in the bucket is complete.
    const again = await bucketPlan('s3e2e', 'r2', CATEGORIES);
    const rerun = await (await startPipelineRun(client, again)).result();
    expect(rerun.status).toBe('completed');
    for (const c of rerun.categories) {
      expect(Object.values(c.steps).every((st) => st === 'reused')).toBe(true);
      for (const r of Object.values(c.results) as StepResult[]) expect(r.summary.cachedFrom).toBe('s3e2e/r1');
    }
    expect(await runs.exists('s3e2e/r2/weave/package/package/manifest.json')).toBe(true);
    expect(await runs.exists('s3e2e/r2/weave/train/_manifest.json')).toBe(true);
  }, 300_000);
  it('promotes through a champion pointer in the bucket, and serving from the bucket follows it', async () => {
    const promotions: Record<string, { promoted: boolean; reason: string }> = {};
    for (const runId of ['n1', 'n2']) {
      // Two distinct models to promote and roll back between (the cache would make n2 a copy of n1).
      const plan = await bucketPlan('s3nightly', runId, ['weave'], true);
      const summary = await (await startPipelineRun(client, plan)).result();
      expect(summary.categories[0].failure?.message ?? null).toBeNull();
      promotions[runId] = JSON.parse(
        (await runs.getBytes(`s3nightly/${runId}/weave/promote/promotion.json`)).toString(),
      );
    }
    expect(promotions.n1).toMatchObject({ promoted: true, comparedOn: 'test' });
    expect(promotions.n1.reason).toMatch(/^first model of this category/);
    // The same data, config and seed train the same model: not worse, so promoted.
    expect(promotions.n2.promoted).toBe(true);
    const pointer = JSON.parse((await runs.getBytes('.champions/s3nightly/weave.json')).toString());
    expect(pointer.packageDir).toBe('s3nightly/n2/weave/package/package');
    expect(pointer.previous.packageDir).toBe('s3nightly/n1/weave/package/package');

    // A server on the bucket serves the champion (n2)...
    await useWasm();
    const server = await startServer({
      models: 's3://fleet/runs',
      port: 0,
      engine: 'auto',
      championPollMs: 100,
      logger: false,
    });
    const servedRun = async () =>
      (
        (await server.app.inject({ method: 'GET', url: '/v1/models' })).json().models as {
          category: string;
          runId: string;
        }[]
      ).find((m) => m.category === 'weave')?.runId;
    expect(await servedRun()).toBe('n2');

    // ...then `npm run pipeline -- rollback` on the bucket points the champion back at n1; the
    // running server follows the pointer in the bucket, and a fresh mirror serves n1, not the newest.
    const cli = spawnSync(
      process.execPath,
      [
        '--import',
        TSX,
        join(REPO, 'client.ts'),
        'rollback',
        'weave',
        '--pipeline',
        's3nightly',
        '--runs-root',
        's3://fleet/runs',
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toContain(
      'weave: champion rolled back to run n1; s3://fleet/runs/.champions/s3nightly/weave.json',
    );
    const back = JSON.parse((await runs.getBytes('.champions/s3nightly/weave.json')).toString());
    expect(back.packageDir).toBe('s3nightly/n1/weave/package/package');
    try {
      const deadline = Date.now() + 30_000;
      while ((await servedRun()) !== 'n1' && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(await servedRun()).toBe('n1');
    } finally {
      await server.app.close();
    }
    const mirrored = await mirrorRemoteModels('s3://fleet/runs', { cacheDir: join(dir, 'serve-cache') });
    expect(mirrored.packages).toContain('s3nightly/n1/weave/package/package');
    expect(mirrored.packages).not.toContain('s3nightly/n2/weave/package/package');
    expect(mirrored.skipped.some((k) => /not the champion/.test(k.reason))).toBe(true);
  }, 240_000);
});
