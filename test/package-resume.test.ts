/**
 * Step ownership (each step writes only below its own folder; the servable package is sealed once):
 * a real run whose report step fails once, then `resume`, against a real Temporal dev server with the
 * real steps. Everything before report is reused (its outputs still verify: nothing rewrote them),
 * and the sealed package does not change on a later resume.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeDataset } from '../lib/data/synth';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import { STEPS, summaryStep } from '../lib/registry';
import type { StepFunction } from '../lib/steps/contracts';
import { sha256File } from '../lib/util/atomic';
import { UserError } from '../lib/util/errors';
import { startPipelineRun } from '../temporal/runs';
import { type InProcessWorkers, startInProcessWorkers } from './support/in-process-workers';

Runtime.install({ logger: new DefaultLogger('ERROR') });

let temporal: InProcessWorkers;
let dir: string;
const marker = () => join(dir, 'report-fails');

/** The real report step, failing (as a user error: no retry) while the marker file exists. */
const flakyReport: StepFunction = async (ctx, hooks) => {
  if (existsSync(marker())) throw new UserError('INVALID_ARGUMENT', 'report fails on purpose (test)');
  return STEPS.report(ctx, hooks);
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'package-resume-'));
  await synthesizeDataset(join(dir, 'data'), {
    size: 32,
    categories: ['weave'],
    trainGood: 8,
    testGood: 2,
    perDefect: 1,
  });
  writeFileSync(
    join(dir, 'p.yaml'),
    [
      'name: ownership',
      'dataset: { root: data, categories: all }',
      'defaults: { queue: cpu, retry: { maximum_attempts: 2, initial_interval: 200ms }, heartbeat: 30s }',
      'training: { image_size: 32, epochs: 1, batch_size: 4, model: { widths: [4, 8] } }',
      'steps:',
      '  - { name: preprocess, activity: preprocess }',
      '  - { name: train, activity: train, needs: [preprocess], resources: { gpu: 1 } }',
      '  - { name: validate, activity: validate, needs: [train] }',
      '  - { name: checkpoint, activity: checkpoint, needs: [train, validate] }',
      '  - { name: threshold, activity: threshold, needs: [validate] }',
      '  - { name: report, activity: report, needs: [threshold] }',
      '  - { name: package, activity: package, needs: [checkpoint, threshold, report] }',
      '',
    ].join('\n'),
  );
  temporal = await startInProcessWorkers({ steps: { ...STEPS, report: flakyReport }, summary: summaryStep });
});

afterAll(async () => {
  await temporal?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('each step writes only below its own folder', () => {
  it('a report failure, then resume: earlier steps are reused and the sealed package never changes', async () => {
    writeFileSync(marker(), 'x');
    const plan = await buildRunPlan({
      pipelinePath: join(dir, 'p.yaml'),
      runsRoot: join(dir, 'runs'),
      runId: 'r1',
    });
    const first = await (await startPipelineRun(temporal.client, plan)).result();
    expect(first.categories[0].steps).toMatchObject({
      threshold: 'completed',
      report: 'failed',
      package: 'skipped',
    });
    const checkpointManifest = join(plan.runDir, 'weave', 'checkpoint', 'package', 'manifest.json');
    const before = await sha256File(checkpointManifest);

    rmSync(marker());
    const second = await (await startPipelineRun(temporal.client, plan, { reuseCompleted: true })).result();
    expect(second.status).toBe('completed');
    expect(second.categories[0].steps).toEqual({
      preprocess: 'reused',
      train: 'reused',
      validate: 'reused',
      checkpoint: 'reused',
      threshold: 'reused',
      report: 'completed',
      package: 'completed',
    });
    expect(await sha256File(checkpointManifest)).toBe(before);
    const served = join(plan.runDir, 'weave', 'package', 'package', 'manifest.json');
    const sealed = await sha256File(served);

    const third = await (await startPipelineRun(temporal.client, plan, { reuseCompleted: true })).result();
    expect(Object.values(third.categories[0].steps).every((s) => s === 'reused')).toBe(true);
    expect(await sha256File(served)).toBe(sealed);
  });
});
