/**
 * Step caching across runs by content hash (lib/steps/step-cache), against a real Temporal dev server
 * with the real steps: an unchanged rerun reuses every step from the first run; a changed threshold
 * setting re-runs exactly threshold and what depends on it; one changed training image re-runs
 * everything from preprocess; `--no-cache` (noCache) runs every step.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeDataset } from '../lib/data/synth';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import { STEPS, summaryStep } from '../lib/registry';
import type { StepResult } from '../lib/steps/contracts';
import { startPipelineRun } from '../temporal/runs';
import { type InProcessWorkers, startInProcessWorkers } from './support/in-process-workers';

Runtime.install({ logger: new DefaultLogger('ERROR') });

let temporal: InProcessWorkers;
let dir: string;

const pipeline = (threshold: string) =>
  [
    'name: cached',
    'dataset: { root: data, categories: all }',
    'defaults: { queue: cpu, retry: { maximum_attempts: 2, initial_interval: 200ms }, heartbeat: 30s }',
    `training: { image_size: 32, epochs: 1, batch_size: 4, model: { widths: [4, 8] }, threshold: { strategy: ${threshold} } }`,
    'steps:',
    '  - { name: preprocess, activity: preprocess }',
    '  - { name: train, activity: train, needs: [preprocess], resources: { gpu: 1 } }',
    '  - { name: validate, activity: validate, needs: [train] }',
    '  - { name: checkpoint, activity: checkpoint, needs: [train, validate] }',
    '  - { name: threshold, activity: threshold, needs: [validate] }',
    '  - { name: report, activity: report, needs: [threshold] }',
    '  - { name: package, activity: package, needs: [checkpoint, threshold, report] }',
    '',
  ].join('\n');

async function runOnce(runId: string, opts: { threshold?: string; noCache?: boolean } = {}) {
  writeFileSync(join(dir, 'p.yaml'), pipeline(opts.threshold ?? 'percentile'));
  const plan = await buildRunPlan({
    pipelinePath: join(dir, 'p.yaml'),
    runsRoot: join(dir, 'runs'),
    runId,
    noCache: opts.noCache,
  });
  const summary = await (await startPipelineRun(temporal.client, plan)).result();
  expect(summary.status).toBe('completed');
  return { plan, steps: summary.categories[0].steps };
}

const result = (runDir: string, step: string) =>
  JSON.parse(readFileSync(join(runDir, 'weave', step, 'result.json'), 'utf8')) as StepResult;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'step-cache-'));
  await synthesizeDataset(join(dir, 'data'), {
    size: 32,
    categories: ['weave'],
    trainGood: 8,
    testGood: 2,
    perDefect: 1,
  });
  temporal = await startInProcessWorkers({ steps: STEPS, summary: summaryStep });
});

afterAll(async () => {
  await temporal?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('step cache across runs', () => {
  it('reuses unchanged steps, re-runs exactly what a change reaches, and runs everything under --no-cache', async () => {
    const first = await runOnce('r1');
    expect(Object.values(first.steps).every((s) => s === 'completed')).toBe(true);

    // Unchanged data, config and code: nothing runs again.
    const second = await runOnce('r2');
    expect(second.steps).toEqual({
      preprocess: 'reused',
      train: 'reused',
      validate: 'reused',
      checkpoint: 'reused',
      threshold: 'reused',
      report: 'reused',
      package: 'reused',
    });
    const train2 = result(second.plan.runDir, 'train');
    expect(train2.summary.cachedFrom).toBe(join('cached', 'r1'));
    expect(train2.outputs).toEqual(result(first.plan.runDir, 'train').outputs);
    // The adopted folder is complete: the package of r2 loads and serves.
    const { loadModelPackage } = await import('../lib/package/package');
    await loadModelPackage(join(second.plan.runDir, 'weave', 'package', 'package'));

    // The threshold strategy changed: preprocess, train and validate do not read it and are reused;
    // checkpoint (its package records the config), threshold, report and package run again.
    const third = await runOnce('r3', { threshold: 'f1' });
    expect(third.steps).toEqual({
      preprocess: 'reused',
      train: 'reused',
      validate: 'reused',
      checkpoint: 'completed',
      threshold: 'completed',
      report: 'completed',
      package: 'completed',
    });

    // One changed training image: preprocess runs again, and everything after it.
    const good = join(dir, 'data', 'weave', 'train', 'good');
    const file = (await readdir(good)).sort()[0];
    const img = await sharp(join(good, file)).negate().png().toBuffer();
    writeFileSync(join(good, file), img);
    const fourth = await runOnce('r4');
    expect(fourth.steps.preprocess).toBe('completed');
    expect(fourth.steps.train).toBe('completed');

    // Unchanged since r4, but --no-cache: every step runs.
    const fifth = await runOnce('r5', { noCache: true });
    expect(Object.values(fifth.steps).every((s) => s === 'completed')).toBe(true);
    expect(result(fifth.plan.runDir, 'train').summary.cachedFrom).toBeUndefined();
  });
});
