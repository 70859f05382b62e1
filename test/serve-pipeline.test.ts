/**
 * The serving side of a real (tiny) run: validate -> checkpoint -> threshold -> report steps on the
 * synthetic eval run, then `--models <runs dir>` discovery, a prediction with the threshold step's
 * calibration, the report's metrics in /v1/models and the report page under /reports/.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { thresholdStep } from '../lib/eval/threshold-step';
import { validateStep } from '../lib/eval/validate-step';
import { packageStep } from '../lib/package/package-step';
import { reportStep } from '../lib/report/report-step';
import { buildServer } from '../lib/serve/app';
import { loadServedModels } from '../lib/serve/models';
import { localHooks } from '../lib/steps/contracts';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { type EvalRun, makeEvalRun } from './support/eval-run';
import { testImage, useWasm } from './support/tiny-package';

let run: EvalRun;
let app: FastifyInstance;

beforeAll(async () => {
  await useWasm();
  run = await makeEvalRun();
  run.results.validate = await validateStep(run.ctx('validate'), localHooks());
  run.results.checkpoint = await checkpointStep(run.ctx('checkpoint'), localHooks());
  run.results.threshold = await thresholdStep(run.ctx('threshold'), localHooks());
  run.results.report = await reportStep(run.ctx('report'), localHooks());
  run.results.package = await packageStep(run.ctx('package'), localHooks());
  const { models } = await loadServedModels(run.runDir);
  ({ app } = await buildServer({ models }));
});
afterAll(async () => {
  await app?.close();
  if (run?.runDir) await rm(run.runDir, { recursive: true, force: true });
});

describe('serving a package produced by the pipeline steps', () => {
  it('predicts with the threshold step calibration', async () => {
    const cal = JSON.parse(
      await readFile(join(run.runDir, 'widget', 'package', 'package', 'calibration.json'), 'utf8'),
    ) as { imageThreshold: number };
    const res = await app.inject({
      method: 'POST',
      url: '/v1/predict',
      payload: { image: (await testImage('png', { defect: true })).toString('base64') },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.threshold).toBe(cal.imageThreshold);
    expect(body.verdict).toBe(body.score >= cal.imageThreshold ? 'defective' : 'good');
    expect(body.normalisedScore >= 0.5 === (body.verdict === 'defective')).toBe(true);
  });

  it('lists the report metrics and serves the run report', async () => {
    const [model] = (await app.inject('/v1/models')).json().models;
    expect(model).toMatchObject({ category: 'widget', runId: 'r1', reports: '/reports/test/r1/' });
    expect(model.metrics).not.toBeNull();
    const index = (await app.inject('/reports/')).body;
    const href = /href="(\/reports\/test\/r1\/[^"]+\.html)"/.exec(index)?.[1];
    expect(href, index).toBeDefined();
    const page = await app.inject(href!);
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
  });
});
