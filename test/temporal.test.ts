/**
 * Orchestration against a REAL Temporal dev server with in-process workers running the real
 * workflows and activity adapters over small test step functions (test/support/test-steps.ts).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRunProgress } from '../temporal/progress';
import { startPipelineRun } from '../temporal/runs';
import {
  createPipelineSchedule,
  deletePipelineSchedule,
  describePipelineSchedule,
  listPipelineSchedules,
  triggerPipelineSchedule,
} from '../temporal/schedules';
import { createRoleWorker, WORKFLOWS_PATH } from '../temporal/worker-runtime';
import type { PipelineSummary } from '../workflows/definitions';
import { cancelCategoryUpdate, categoryProgressQuery, categoryWorkflowId } from '../workflows/definitions';
import { testPlan } from './support/plans';
import { startTestServer, type TestServer } from './support/temporal-server';
import { TEST_STEPS, testSummary } from './support/test-steps';

Runtime.install({ logger: new DefaultLogger('ERROR') });

let server: TestServer;
let workerConnection: NativeConnection;
let clientConnection: Connection;
let client: Client;
let workers: Worker[] = [];
let running: Promise<void>[] = [];
let runsRoot: string;
let bundle: Awaited<ReturnType<typeof bundleWorkflowCode>>;

beforeAll(async () => {
  runsRoot = mkdtempSync(join(tmpdir(), 'anomaly-runs-'));
  [server, bundle] = await Promise.all([
    startTestServer(),
    bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') }),
  ]);
  workerConnection = await NativeConnection.connect({ address: server.address });
  const registry = { steps: TEST_STEPS, summary: testSummary };
  workers = await Promise.all([
    createRoleWorker(workerConnection, 'default', registry, {
      role: 'cpu',
      workflowBundle: bundle,
      cpuSlots: 8,
    }),
    createRoleWorker(workerConnection, 'default', registry, { role: 'train' }),
  ]);
  running = workers.map((w) => w.run());
  clientConnection = await Connection.connect({ address: server.address });
  client = new Client({ connection: clientConnection });
});

afterAll(async () => {
  for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
  await Promise.allSettled(running);
  await clientConnection?.close();
  await workerConnection?.close();
  await server?.dispose();
  rmSync(runsRoot, { recursive: true, force: true });
});

function readOut(
  runDir: string,
  category: string,
  step: string,
): { startedAt: string; finishedAt: string; inputs: string[] } {
  return JSON.parse(readFileSync(join(runDir, category, step, 'out.json'), 'utf8'));
}

describe('pipeline workflow on a real dev server', () => {
  it('runs the DAG in dependency order, independent steps in parallel, passing upstream results', async () => {
    const plan = testPlan({
      runsRoot,
      steps: [
        { name: 'prep', activity: 'preprocess' },
        { name: 'val', activity: 'validate', needs: ['prep'], params: { sleepMs: 1200 } },
        { name: 'thr', activity: 'threshold', needs: ['prep'], params: { sleepMs: 1200 } },
        { name: 'rep', activity: 'report', needs: ['val', 'thr'] },
      ],
    });
    // Parallelism is asserted on the steps' own timestamps below, not on wall time (a loaded machine
    // stretches the latter).
    const summary = await (await startPipelineRun(client, plan)).result();
    expect(summary.status).toBe('completed');
    const [cat] = summary.categories;
    expect(cat.steps).toEqual({ prep: 'completed', val: 'completed', thr: 'completed', rep: 'completed' });
    const out = (s: string) => readOut(plan.runDir, 'bottle', s);
    const ms = (iso: string) => Date.parse(iso);
    expect(ms(out('val').startedAt)).toBeGreaterThanOrEqual(ms(out('prep').finishedAt));
    expect(ms(out('thr').startedAt)).toBeGreaterThanOrEqual(ms(out('prep').finishedAt));
    // Parallel: each sibling started before the other finished.
    expect(ms(out('thr').startedAt)).toBeLessThan(ms(out('val').finishedAt));
    expect(ms(out('val').startedAt)).toBeLessThan(ms(out('thr').finishedAt));
    expect(ms(out('rep').startedAt)).toBeGreaterThanOrEqual(
      Math.max(ms(out('val').finishedAt), ms(out('thr').finishedAt)),
    );
    expect(out('rep').inputs.sort()).toEqual(['preprocess', 'threshold', 'validate']);
    expect(cat.results.rep.outputs[0].path).toBe('bottle/rep/out.json');
    // Attempt logs in the run folder.
    const logLines = readFileSync(join(plan.runDir, 'bottle', 'val', 'logs', 'attempt-1.log'), 'utf8')
      .trim()
      .split('\n');
    expect(logLines.map((l) => JSON.parse(l).msg)).toContain('attempt finished');
    expect(summary.summary?.summary).toEqual({ categories: 1, failed: 0 });
    expect(existsSync(join(plan.runDir, 'summary.json'))).toBe(true);
  });

  it('retries transient failures and then succeeds', async () => {
    const plan = testPlan({
      runsRoot,
      steps: [{ name: 'prep', activity: 'preprocess', params: { failTimes: 2 }, maximumAttempts: 3 }],
    });
    const summary = await (await startPipelineRun(client, plan)).result();
    expect(summary.status).toBe('completed');
    expect(summary.categories[0].results.prep.summary.attempt).toBe(3);
    const logs = join(plan.runDir, 'bottle', 'prep', 'logs');
    expect([1, 3].map((n) => existsSync(join(logs, `attempt-${n}.log`)))).toEqual([true, true]);
    expect(readFileSync(join(logs, 'attempt-1.log'), 'utf8')).toContain('transient failure on attempt 1');
    // On a loaded machine attempt 2 can be dispatched to a poll the worker never receives; Temporal
    // then times it out and attempt 3 runs. When it did run, it failed as the step says.
    const second = join(logs, 'attempt-2.log');
    if (existsSync(second)) expect(readFileSync(second, 'utf8')).toContain('transient failure on attempt 2');
  });

  it('fails fast on a UserError (non-retryable, with its code) and skips downstream steps', async () => {
    const plan = testPlan({
      runsRoot,
      steps: [
        {
          name: 'prep',
          activity: 'preprocess',
          params: { userError: 'INVALID_DATASET' },
          maximumAttempts: 5,
        },
        { name: 'train', activity: 'train', needs: ['prep'] },
      ],
    });
    const summary = await (await startPipelineRun(client, plan)).result();
    expect(summary.status).toBe('failed');
    const [cat] = summary.categories;
    expect(cat.status).toBe('failed');
    expect(cat.failure).toMatchObject({ step: 'prep', code: 'INVALID_DATASET', retryable: false });
    expect(cat.failure?.message).toContain('rejects bottle');
    expect(cat.steps).toEqual({ prep: 'failed', train: 'skipped' });
    expect(existsSync(join(plan.runDir, 'bottle', 'prep', 'logs', 'attempt-2.log'))).toBe(false);
    // The child workflow itself shows as Failed in the UI, with the reason.
    const child = client.workflow.getHandle(categoryWorkflowId(plan.runId, 'bottle'));
    await expect(child.result()).rejects.toBeInstanceOf(WorkflowFailedError);
  });

  it('isolates a failing category: the others finish and the summary lists the failure', async () => {
    const plan = testPlan({
      runsRoot,
      categories: ['bottle', 'cable', 'screw'],
      concurrency: 2,
      steps: [
        { name: 'prep', activity: 'preprocess' },
        {
          name: 'train',
          activity: 'train',
          needs: ['prep'],
          params: { failTimes: 99, onlyCategories: ['cable'] },
          maximumAttempts: 2,
        },
      ],
    });
    const summary = await (await startPipelineRun(client, plan)).result();
    expect(summary.status).toBe('failed');
    const byName = Object.fromEntries(summary.categories.map((c) => [c.category, c]));
    expect(byName.bottle.status).toBe('completed');
    expect(byName.screw.status).toBe('completed');
    expect(byName.cable.status).toBe('failed');
    expect(byName.cable.failure).toMatchObject({ step: 'train', retryable: true });
    // The step's own error normally; Temporal's heartbeat timeout when the server handed the
    // attempt to a poll the loaded worker never received (a dispatch lost on the wire), which
    // Temporal reports as a timeout. Either way an attempt ran and logged the step's error.
    expect(byName.cable.failure?.message).toMatch(/transient failure on attempt 2|timed out \(HEARTBEAT\)/);
    const cableLogs = join(plan.runDir, 'cable', 'train', 'logs');
    const logged = [1, 2]
      .map((n) => join(cableLogs, `attempt-${n}.log`))
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f, 'utf8'));
    expect(logged.join('\n')).toMatch(/transient failure on attempt \d/);
    expect(byName.cable.results.prep).toBeDefined();
    expect(summary.summary?.summary).toEqual({ categories: 3, failed: 1 });
  });

  it('cancels one category on request while the others complete; progress is queryable', async () => {
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
          heartbeatTimeoutMs: 2000,
          params: { epochs: 60, epochMs: 150 },
        },
      ],
    });
    const handle = await startPipelineRun(client, plan);
    const childId = categoryWorkflowId(plan.runId, 'cable');
    // Wait until cable's training reports its second epoch. Bounded by time, not by polls: on a loaded
    // 2-core CI machine the worker can take seconds to pick the activity up.
    let epochSeen = 0;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && epochSeen < 2) {
      await new Promise((r) => setTimeout(r, 100));
      const progress = await readRunProgress(client, handle).catch(() => undefined);
      const train = progress?.categories.cable?.activities.find((a) => a.activity === 'train');
      epochSeen = train?.details?.epoch ?? 0;
      if (epochSeen) {
        expect(train?.details).toMatchObject({ stage: 'train', totalEpochs: 60 });
        expect(progress?.categories.cable?.runningSteps).toEqual(['train']);
        expect(progress?.pipeline.categories.cable).toBe('running');
      }
    }
    expect(epochSeen).toBeGreaterThanOrEqual(2);
    await expect(handle.executeUpdate(cancelCategoryUpdate, { args: ['nope'] })).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/unknown category 'nope'/) },
    });
    expect(await handle.executeUpdate(cancelCategoryUpdate, { args: ['cable'] })).toEqual({
      category: 'cable',
      previousStatus: 'running',
    });
    const summary = await handle.result();
    const byName = Object.fromEntries(summary.categories.map((c) => [c.category, c]));
    expect(byName.bottle.status).toBe('completed');
    expect(byName.cable.status).toBe('cancelled');
    expect(byName.cable.steps).toEqual({ prep: 'completed', train: 'cancelled' });
    const cableProgress = await client.workflow.getHandle(childId).query(categoryProgressQuery);
    expect(cableProgress.status).toBe('cancelled');
  });

  it('resume reuses verified step results and re-runs only what failed', async () => {
    const marker = join(runsRoot, 'fail-marker');
    writeFileSync(marker, 'x');
    const plan = testPlan({
      runsRoot,
      steps: [
        { name: 'prep', activity: 'preprocess' },
        {
          name: 'train',
          activity: 'train',
          needs: ['prep'],
          params: { failIfExists: marker },
          maximumAttempts: 1,
        },
        { name: 'rep', activity: 'report', needs: ['train'] },
      ],
    });
    const first = await (await startPipelineRun(client, plan)).result();
    expect(first.categories[0].steps).toEqual({ prep: 'completed', train: 'failed', rep: 'skipped' });
    rmSync(marker);
    const second = await (await startPipelineRun(client, plan, { reuseCompleted: true })).result();
    expect(second.status).toBe('completed');
    expect(second.categories[0].steps).toEqual({ prep: 'reused', train: 'completed', rep: 'completed' });

    // A changed artifact is not trusted: the step (and everything after it) runs again.
    writeFileSync(join(plan.runDir, 'bottle', 'prep', 'out.json'), '{"tampered":true}');
    const third = await (await startPipelineRun(client, plan, { reuseCompleted: true })).result();
    expect(third.categories[0].steps).toEqual({ prep: 'completed', train: 'completed', rep: 'completed' });
  });

  it('replays recorded histories deterministically', async () => {
    const plan = testPlan({
      runsRoot,
      categories: ['bottle', 'cable'],
      steps: [
        { name: 'prep', activity: 'preprocess' },
        { name: 'a', activity: 'train', needs: ['prep'], params: { failTimes: 1 } },
        {
          name: 'b',
          activity: 'validate',
          needs: ['prep'],
          params: { userError: 'INVALID_CONFIG', onlyCategories: ['cable'] },
        },
      ],
    });
    const handle = await startPipelineRun(client, plan);
    await handle.result();
    const histories = [
      { workflowId: handle.workflowId, history: await handle.fetchHistory() },
      ...(await Promise.all(
        ['bottle', 'cable'].map(async (c) => {
          const h = client.workflow.getHandle(categoryWorkflowId(plan.runId, c));
          return { workflowId: h.workflowId, history: await h.fetchHistory() };
        }),
      )),
    ];
    for (const { workflowId, history } of histories) {
      await Worker.runReplayHistory({ workflowBundle: bundle, replayName: workflowId }, history);
    }
  });

  it('creates, triggers, lists and deletes a schedule that starts pipeline runs', async () => {
    const plan = {
      ...testPlan({ runsRoot, pipeline: 'nightly', steps: [{ name: 'prep', activity: 'preprocess' }] }),
      schedule: { cron: ['0 3 * * *'], overlap: 'skip' as const, catchupWindowMs: 60_000 },
    };
    const scheduleId = `nightly-${plan.runId}`;
    await createPipelineSchedule(client, scheduleId, plan);
    try {
      const desc = await describePipelineSchedule(client, scheduleId);
      expect(desc.policies.overlap).toBe('SKIP');
      expect(desc.spec.calendars?.length).toBe(1);
      await triggerPipelineSchedule(client, scheduleId);
      let started: string | undefined;
      for (const until = Date.now() + 20_000; Date.now() < until && !started; ) {
        await new Promise((r) => setTimeout(r, 200));
        started = (await describePipelineSchedule(client, scheduleId)).info.recentActions[0]?.action.workflow
          .workflowId;
      }
      expect(started).toBeDefined();
      const summary: PipelineSummary = await client.workflow.getHandle(started!).result();
      expect(summary.status).toBe('completed');
      // Each fire gets its own run id / directory, derived from the fire time.
      expect(summary.runId).not.toBe(plan.runId);
      expect(summary.runId).toMatch(/^nightly-/);
      expect(existsSync(join(runsRoot, 'nightly', summary.runId, 'bottle', 'prep', 'result.json'))).toBe(
        true,
      );
      // Visibility is eventually consistent: the list may lag a little behind create.
      let listed = false;
      for (const until = Date.now() + 20_000; Date.now() < until && !listed; ) {
        listed = (await listPipelineSchedules(client)).some((s) => s.scheduleId === scheduleId);
        if (!listed) await new Promise((r) => setTimeout(r, 200));
      }
      expect(listed).toBe(true);
    } finally {
      await deletePipelineSchedule(client, scheduleId);
    }
    await expect(describePipelineSchedule(client, scheduleId)).rejects.toThrow();
  });
});
