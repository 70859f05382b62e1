import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeDataset } from '../lib/data/synth';
import { buildRunPlan, newRunId } from '../lib/pipeline/build-plan';
import { cronProblem } from '../lib/pipeline/cron';
import { findCycle } from '../lib/pipeline/dag';
import { parseDuration } from '../lib/pipeline/duration';
import { loadPipeline } from '../lib/pipeline/load';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { UserError } from '../lib/util/errors';

let tmp: string;
let data: string;
let n = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pipe-test-'));
  data = join(tmp, 'data');
  await synthesizeDataset(data, {
    size: 16,
    trainGood: 2,
    testGood: 1,
    perDefect: 1,
    categories: ['weave', 'chip'],
  });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const DAG = `steps:
  - { name: preprocess, activity: preprocess }
  - { name: train, activity: train, needs: [preprocess], resources: { gpu: 1 }, heartbeat: 2m, start_to_close: 6h, retry: { maximum_attempts: 5 } }
  - { name: validate, activity: validate, needs: [train] }
  - { name: checkpoint, activity: checkpoint, needs: [train, validate] }
  - { name: threshold, activity: threshold, needs: [validate, checkpoint] }
  - { name: report, activity: report, needs: [threshold] }
`;

async function pipelineFile(body: string): Promise<string> {
  const path = join(tmp, `p${n++}.yaml`);
  await writeFile(path, body);
  return path;
}

async function pipelineError(body: string): Promise<string> {
  const path = await pipelineFile(body);
  const err = await loadPipeline(path).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  expect((err as UserError).code).toBe('INVALID_PIPELINE');
  const msg = (err as UserError).message;
  expect(msg).toContain(`p${n - 1}.yaml`);
  return msg;
}

describe('pipeline validation', () => {
  it('accepts the shipped pipelines', async () => {
    for (const name of ['quick', 'mvtec', 'nightly', 'patchcore', 'draem']) {
      const p = await loadPipeline(name);
      expect(p.spec.name).toBe(name);
      expect(p.spec.steps.map((s) => s.activity)).toEqual([
        'preprocess',
        'train',
        'validate',
        'checkpoint',
        'threshold',
        'report',
        'package',
        // The scheduled refit may only replace a category's champion by a model that is not worse.
        ...(name === 'nightly' ? ['promote'] : []),
      ]);
    }
    expect((await loadPipeline('nightly')).spec.schedule?.cron).toEqual(['0 2 * * *']);
  });

  it('rejects an unknown activity, listing the known ones', async () => {
    const msg = await pipelineError(`name: x\nsteps:\n  - { name: prep, activity: prepare }\n`);
    expect(msg).toMatch(
      /steps\[0\]\.activity: expected one of preprocess, train, validate, checkpoint, threshold, report, package, promote, got "prepare"/,
    );
  });

  it('rejects unknown dependencies and duplicate names', async () => {
    const unknown = await pipelineError(
      `name: x\nsteps:\n  - { name: preprocess, activity: preprocess }\n  - { name: train, activity: train, needs: [prepocess] }\n`,
    );
    expect(unknown).toMatch(
      /steps\[1\] \(train\)\.needs: unknown step "prepocess" \(steps: preprocess, train\)/,
    );
    const dup = await pipelineError(
      `name: x\nsteps:\n  - { name: preprocess, activity: preprocess }\n  - { name: preprocess, activity: preprocess }\n`,
    );
    expect(dup).toMatch(/steps\[1\]\.name: duplicate step name "preprocess" \(also steps\[0\]\)/);
  });

  it('names a cycle', async () => {
    const msg = await pipelineError(
      `name: x\nsteps:\n  - { name: preprocess, activity: preprocess }\n  - { name: train, activity: train, needs: [preprocess, validate] }\n  - { name: validate, activity: validate, needs: [train] }\n`,
    );
    expect(msg).toMatch(/: steps: cycle: train -> validate -> train$/m);
    expect(findCycle([{ name: 'a', activity: 'train', needs: ['a'] }])).toEqual(['a', 'a']);
  });

  it('rejects bad durations with the accepted forms', async () => {
    for (const bad of ['10 minutes', '-5s', '0s', '30']) {
      const msg = await pipelineError(`name: x\ndefaults: { heartbeat: ${JSON.stringify(bad)} }\n${DAG}`);
      expect(msg).toContain(
        `defaults.heartbeat: expected a positive duration like 500ms, 30s, 10m, 6h or 1d, got ${JSON.stringify(bad)}`,
      );
    }
    const step = await pipelineError(
      `name: x\nsteps:\n  - { name: preprocess, activity: preprocess, start_to_close: 5 min }\n`,
    );
    expect(step).toContain('steps[0].start_to_close: expected a positive duration');
    expect([
      parseDuration('500ms'),
      parseDuration('30s'),
      parseDuration('10m'),
      parseDuration('6h'),
      parseDuration('1d'),
    ]).toEqual([500, 30_000, 600_000, 21_600_000, 86_400_000]);
  });

  it('rejects bad cron expressions', async () => {
    const msg = await pipelineError(`name: x\nschedule: { cron: ["0 2 * *"] }\n${DAG}`);
    expect(msg).toContain('schedule.cron[0]: expected a cron expression with 5 fields');
    expect(cronProblem('61 * * * *')).toMatch(/invalid minute field "61"/);
    expect(cronProblem('*/15 0-6 1,15 JAN-MAR MON')).toBeNull();
  });

  it('rejects unknown keys at any level', async () => {
    expect(await pipelineError(`name: x\nconcurency: 2\n${DAG}`)).toMatch(
      /: concurency: unknown key \(known keys: name, description/,
    );
    expect(
      await pipelineError(`name: x\nsteps:\n  - { name: preprocess, activity: preprocess, retries: 3 }\n`),
    ).toMatch(/steps\[0\]\.retries: unknown key/);
    expect(await pipelineError(`name: x\ntraining: { epoch: 3 }\n${DAG}`)).toMatch(
      /: training\.epoch: unknown key/,
    );
    expect(await pipelineError(`name: x\ntraining: { batch_size: -3 }\n${DAG}`)).toMatch(
      /: training\.batch_size: expected positive integer, got -3/,
    );
  });

  it('rejects a step whose activity lacks its upstream activity', async () => {
    const msg = await pipelineError(
      `name: x\nsteps:\n  - { name: preprocess, activity: preprocess }\n  - { name: train, activity: train, needs: [preprocess] }\n  - { name: validate, activity: validate, needs: [train] }\n  - { name: checkpoint, activity: checkpoint, needs: [train] }\n  - { name: threshold, activity: threshold, needs: [validate] }\n  - { name: package, activity: package, needs: [threshold] }\n`,
    );
    expect(msg).toContain(
      'steps[5] (package).needs: activity "package" uses the output of a "checkpoint" step',
    );
    expect(msg).toContain('add "checkpoint" to its needs');
    const noTrain = await pipelineError(`name: x\nsteps:\n  - { name: v, activity: validate }\n`);
    expect(noTrain).toContain('add a step with activity: train');
  });

  it('rejects path-like category names in the YAML', async () => {
    const msg = await pipelineError(`name: x\ndataset: { categories: ["../etc"] }\n${DAG}`);
    expect(msg).toContain('dataset.categories[0]: expected a category folder name');
  });
});

describe('buildRunPlan', () => {
  it('resolves queues, timeouts, retries, categories and per-category config', async () => {
    const path = await pipelineFile(
      `name: demo\nconcurrency: 3\ndataset: { root: data }\ndefaults: { retry: { maximum_attempts: 2 }, start_to_close: 5m }\ntraining: { epochs: 2, image_size: 32 }\n${DAG}`,
    );
    const plan = await buildRunPlan({
      pipelinePath: path,
      runsRoot: join(tmp, 'runs'),
      runId: 'r1',
      overrides: { batch_size: 4 },
    });
    expect(plan.pipeline).toBe('demo');
    expect(plan.dataRoot).toBe(data);
    expect(plan.runDir).toBe(join(tmp, 'runs', 'demo', 'r1'));
    expect(plan.concurrency).toBe(3);
    expect(plan.categories.map((c) => c.name)).toEqual(['chip', 'weave']);
    const chip = plan.categories[0].config;
    expect([chip.epochs, chip.image_size, chip.batch_size, chip.augmentation.hflip]).toEqual([
      2,
      32,
      4,
      false,
    ]);
    expect(plan.categories[1].config.augmentation.hflip).toBe(true);
    const train = plan.steps.find((s) => s.name === 'train')!;
    expect(train).toMatchObject({
      taskQueue: TASK_QUEUES.gpu,
      gpu: 1,
      heartbeatTimeoutMs: 120_000,
      startToCloseTimeoutMs: 21_600_000,
    });
    expect(train.retry).toEqual({
      maximumAttempts: 5,
      initialIntervalMs: 1000,
      backoffCoefficient: 2,
      maximumIntervalMs: 60_000,
    });
    const validate = plan.steps.find((s) => s.name === 'validate')!;
    expect(validate).toMatchObject({
      taskQueue: TASK_QUEUES.cpu,
      gpu: 0,
      startToCloseTimeoutMs: 300_000,
      heartbeatTimeoutMs: 30_000,
    });
    expect(validate.retry.maximumAttempts).toBe(2);
    expect(plan.schedule).toBeNull();
    expect(plan.configHash).toMatch(/^[0-9a-f]{64}$/);
    const again = await buildRunPlan({
      pipelinePath: path,
      dataRoot: data,
      runsRoot: join(tmp, 'runs'),
      overrides: { batch_size: 4 },
    });
    expect(again.configHash).toBe(plan.configHash);
    expect(again.runId).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}$/);
    const other = await buildRunPlan({ pipelinePath: path, dataRoot: data, overrides: { batch_size: 8 } });
    expect(other.configHash).not.toBe(plan.configHash);
  });

  it('checks category names against the dataset', async () => {
    const path = await pipelineFile(`name: demo\n${DAG}`);
    const err = await buildRunPlan({ pipelinePath: path, dataRoot: data, categories: ['bottle'] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).code).toBe('UNKNOWN_CATEGORY');
    expect((err as UserError).message).toContain('unknown category "bottle"');
    expect((err as UserError).message).toContain('available: chip, weave');
    const trav = await buildRunPlan({ pipelinePath: path, dataRoot: data, categories: ['../data'] }).catch(
      (e: unknown) => e,
    );
    expect((trav as UserError).code).toBe('UNKNOWN_CATEGORY');
    expect((trav as UserError).message).toContain('invalid category name "../data"');
    const one = await buildRunPlan({ pipelinePath: path, dataRoot: data, categories: ['weave'] });
    expect(one.categories.map((c) => c.name)).toEqual(['weave']);
    const missing = await buildRunPlan({ pipelinePath: path, dataRoot: join(tmp, 'nope') }).catch(
      (e: unknown) => e,
    );
    expect((missing as UserError).code).toBe('INVALID_DATASET');
  });

  it('resolves a schedule and an explicit queue', async () => {
    const path = await pipelineFile(
      `name: sched\nschedule: { cron: "30 1 * * MON", overlap: buffer_one, catchup_window: 10m }\ndefaults: { queue: special }\n${DAG.replace('resources: { gpu: 1 }', 'resources: { gpu: 1 }, queue: cpu')}`,
    );
    const plan = await buildRunPlan({ pipelinePath: path, dataRoot: data });
    expect(plan.schedule).toEqual({
      cron: ['30 1 * * MON'],
      overlap: 'buffer_one',
      catchupWindowMs: 600_000,
    });
    expect(plan.steps.find((s) => s.name === 'train')!.taskQueue).toBe(TASK_QUEUES.cpu);
    expect(plan.steps.find((s) => s.name === 'report')!.taskQueue).toBe('special');
  });

  it('generates sortable run ids', () => {
    expect(newRunId(new Date('2026-11-28T12:05:01Z'))).toMatch(/^20261128-120501-[0-9a-f]{4}$/);
  });

  it('rejects a missing pipeline, naming the available ones', async () => {
    await mkdir(join(tmp, 'empty'), { recursive: true });
    const err = await loadPipeline('nosuch').catch((e: unknown) => e);
    expect((err as UserError).message).toMatch(/pipeline not found: nosuch \(available in .*: .*quick/);
  });
});
