import { existsSync } from 'node:fs';
import '@tensorflow/tfjs-backend-wasm';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMaps } from '../lib/eval/map-store';
import { readScoresFile } from '../lib/eval/scores-file';
import type { ThresholdsFile } from '../lib/eval/threshold-step';
import { thresholdStep } from '../lib/eval/threshold-step';
import { validateStep } from '../lib/eval/validate-step';
import { packageStep } from '../lib/package/package-step';
import { localHooks } from '../lib/steps/contracts';
import { inputPath } from '../lib/steps/result';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { type EvalRun, makeEvalRun, SIZE } from './support/eval-run';

let run: EvalRun;

beforeAll(async () => {
  await tf.setBackend('wasm');
  run = await makeEvalRun();
});
afterAll(async () => {
  if (run.runDir) await rm(run.runDir, { recursive: true, force: true });
});

describe('validate and threshold steps', () => {
  it('validate scores val and test, writes maps and latency', async () => {
    const before = tf.memory().numTensors;
    const res = await validateStep(run.ctx('validate', { batch_size: 3 }), localHooks());
    run.results.validate = res;
    expect(tf.memory().numTensors).toBe(before);
    expect(res.outputs.map((o) => o.name)).toEqual(['scores', 'test_maps', 'val_maps']);
    const scores = await readScoresFile(inputPath(run.ctx('threshold'), 'validate', 'scores'));
    expect(scores.val).toHaveLength(5);
    expect(scores.test).toHaveLength(8);
    expect(scores.test[3]).toMatchObject({ defectType: 'crack', label: 1, split: 'test' });
    expect(scores.latency.backend).toBe('wasm');
    expect(scores.latency.p95MsPerImage).toBeGreaterThan(0);
    const maps = await readMaps(inputPath(run.ctx('threshold'), 'validate', 'test_maps'));
    expect(maps.maps.length).toBe(8 * SIZE * SIZE);
    expect(maps.index.ids[0]).toBe(scores.test[0].id);
    // max-score config: the image score is the max of its stored map.
    const first = maps.maps.subarray(0, SIZE * SIZE);
    expect(Math.max(...first)).toBeCloseTo(scores.test[0].score, 6);
  });

  it('threshold falls back to mean_std on a small good-only validation split and calibrates the package', async () => {
    run.results.checkpoint = await checkpointStep(run.ctx('checkpoint'), localHooks());
    const ctx = run.ctx('threshold');
    ctx.config = { ...ctx.config, threshold: { ...ctx.config.threshold, strategy: 'youden' } };
    const res = await thresholdStep(ctx, localHooks());
    run.results.threshold = res;
    const file = JSON.parse(await readFile(join(run.runDir, res.outputs[0].path), 'utf8')) as ThresholdsFile;
    expect(file.requested).toBe('youden');
    expect(file.selected).toBe('mean_std');
    expect(file.fallback?.reason).toMatch(
      /^youden: needs defective validation images; none in the validation split; percentile: the 99th percentile needs at least 100 good validation images, there are \d+$/,
    );
    expect(file.strategies).toHaveLength(5);
    expect(file.calibration.imageThreshold).toBe(file.imageThreshold);
    expect(file.calibration.scoreNorm.max).toBeGreaterThan(file.imageThreshold);
    // The threshold step writes only below its own folder; the package step seals the calibration.
    expect(existsSync(join(run.runDir, 'widget', 'checkpoint', 'package', 'calibration.json'))).toBe(false);
    await packageStep(run.ctx('package'), localHooks());
    const pkgCal = JSON.parse(
      await readFile(join(run.runDir, 'widget', 'package', 'package', 'calibration.json'), 'utf8'),
    ) as { imageThreshold: number; strategy: string };
    expect(pkgCal.imageThreshold).toBe(file.imageThreshold);
    expect(pkgCal.strategy).toBe('mean_std');
    expect(JSON.stringify(file)).not.toMatch(/NaN|Infinity/);
  });
});
