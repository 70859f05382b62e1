/**
 * PatchCore: coreset selection, the nearest-neighbour map on hand cases, and the model kind through
 * the real steps (fit, validate, checkpoint, threshold, report, package) and the scoring engine, on
 * the real pretrained backbone at 32 px.
 */
import '@tensorflow/tfjs-backend-wasm';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchcoreSchema, type TrainingConfig } from '../lib/config/schema';
import type { CachedSplit } from '../lib/data/tensor-cache';
import { readCachedSplit } from '../lib/data/tensor-cache';
import { createScoringEngine } from '../lib/eval/scoring-engine';
import { thresholdStep } from '../lib/eval/threshold-step';
import { validateStep } from '../lib/eval/validate-step';
import { createOnnxDetectorScorer } from '../lib/infer/onnx-detector-scorer';
import { resolveBackbone } from '../lib/models/patchcore/backbone';
import { kCenterCoreset } from '../lib/models/patchcore/coreset';
import { fitPatchcore } from '../lib/models/patchcore/fit';
import { PatchcoreModel, patchcoreInfoSchema } from '../lib/models/patchcore/model';
import { loadModelPackage } from '../lib/package/package';
import { packageStep } from '../lib/package/package-step';
import { reportStep } from '../lib/report/report-step';
import { localHooks } from '../lib/steps/contracts';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { trainStep } from '../lib/train/train-step';
import { Rng } from '../lib/util/rng';
import { type EvalRun, expectPackageScoresAsValidate, makeEvalRun, SIZE } from './support/eval-run';
import { useWasm } from './support/tiny-package';

/** The plain greedy k-center loop, for comparison. */
function naiveKCenter(x: Float32Array, n: number, k: number, size: number, first: number): number[] {
  const min = new Float64Array(n).fill(Number.POSITIVE_INFINITY);
  const out = [first];
  for (let i = 0; i < size - 1; i++) {
    const c = out[i];
    for (let p = 0; p < n; p++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += (x[p * k + j] - x[c * k + j]) ** 2;
      min[p] = Math.min(min[p], s);
    }
    let far = 0;
    for (let p = 1; p < n; p++) if (min[p] > min[far]) far = p;
    out.push(far);
  }
  return out;
}

describe('k-center coreset', () => {
  it('selects exactly what the plain greedy loop selects (each pick is the farthest from the earlier ones)', async () => {
    const rng = new Rng(3);
    const n = 400;
    const k = 6;
    // Clusters, so that the triangle-inequality pruning is exercised.
    const x = new Float32Array(n * k);
    for (let p = 0; p < n; p++) for (let j = 0; j < k; j++) x[p * k + j] = (p % 7) * 2 + rng.normal() * 0.3;
    const sel = await kCenterCoreset(x, n, k, { size: 40, projectionDim: k, seed: 9 });
    expect(new Set(sel).size).toBe(40);
    expect([...sel]).toEqual(naiveKCenter(x, n, k, 40, sel[0]));
    // Deterministic for a seed.
    expect([...(await kCenterCoreset(x, n, k, { size: 40, projectionDim: k, seed: 9 }))]).toEqual([...sel]);
  });

  it('selects the same with worker threads as on one thread', async () => {
    const rng = new Rng(5);
    const n = 20000;
    const k = 128;
    const x = new Float32Array(n * k);
    for (let p = 0; p < n; p++) for (let j = 0; j < k; j++) x[p * k + j] = (p % 11) + rng.normal() * 0.5;
    const one = await kCenterCoreset(x, n, k, { size: 60, projectionDim: k, seed: 2, threads: 1 });
    const two = await kCenterCoreset(x, n, k, { size: 60, projectionDim: k, seed: 2, threads: 2 });
    expect([...two]).toEqual([...one]);
  });

  it('keeps every point when the coreset is as large as the set', async () => {
    const sel = await kCenterCoreset(new Float32Array(10 * 3), 10, 3, {
      size: 20,
      projectionDim: 2,
      seed: 1,
    });
    expect([...sel]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('patchcore on the pretrained backbone', () => {
  let run: EvalRun;
  let config: TrainingConfig;
  let train: CachedSplit;
  beforeAll(async () => {
    await useWasm();
    run = await makeEvalRun();
    config = {
      ...run.config,
      model: { ...run.config.model, kind: 'patchcore', patchcore: { coreset_ratio: 1, smoothing_sigma: 1 } },
    } as TrainingConfig;
    run.config.model = config.model;
    train = await readCachedSplit(join(run.runDir, 'widget', 'preprocess'), 'train');
  });
  afterAll(async () => {
    if (run?.runDir) await rm(run.runDir, { recursive: true, force: true });
  });

  it('a patch that is in the bank scores 0; a changed region scores higher, where it changed', async () => {
    const backbone = await resolveBackbone({ ...patchcoreInfoDefaults(), coreset_ratio: 1 });
    const cfg = { ...patchcoreInfoDefaults(), coreset_ratio: 1, smoothing_sigma: 0 };
    const fit = await fitPatchcore({ train, cfg, backbone: backbone.append, seed: 1, threads: 1 });
    expect(fit.bankSize).toBe(fit.trainPatches);
    expect(fit.grid).toBe(SIZE / 8);
    const model = new PatchcoreModel(fit.onnx, fakeInfo(fit));
    const scorer = await createOnnxDetectorScorer(model, { threads: 1 });
    try {
      const px = SIZE * SIZE * 3;
      const same = Float32Array.from(train.images.subarray(0, px), (v) => v / 255);
      const a = await scorer.score(same, 1, SIZE);
      // Paint the top-left quarter white: the map peaks there.
      const changed = same.slice();
      for (let y = 0; y < SIZE / 2; y++)
        for (let x = 0; x < SIZE / 2; x++) for (let c = 0; c < 3; c++) changed[(y * SIZE + x) * 3 + c] = 1;
      const b = await scorer.score(changed, 1, SIZE);
      expect(b.scores[0]).toBeGreaterThan(1);
      // 0 up to the float32 rounding of |f|^2 - 2 f.b + |b|^2 (features reach ~80): < 1 % of a real distance.
      expect(a.scores[0]).toBeLessThan(0.01 * b.scores[0]);
      expect(Math.max(...a.maps)).toBeLessThan(0.01 * b.scores[0]);
      const quarter = (m: Float32Array, y0: number, x0: number) => {
        let s = 0;
        for (let y = y0; y < y0 + SIZE / 2; y++)
          for (let x = x0; x < x0 + SIZE / 2; x++) s += m[y * SIZE + x];
        return s;
      };
      // At 32 px the patch grid is 4 x 4 and the stride-16 features see most of the image: a clear, not a sharp, peak.
      expect(quarter(b.maps, 0, 0)).toBeGreaterThan(1.3 * quarter(b.maps, SIZE / 2, SIZE / 2));
    } finally {
      await scorer.release();
    }
  });

  it('runs as a model kind through train, validate, checkpoint, threshold, report and package', async () => {
    run.results.train = await trainStep(run.ctx('train'), localHooks());
    expect(run.results.train.summary).toMatchObject({
      modelKind: 'patchcore',
      backbone: 'efficientnet-lite2',
    });
    expect(run.results.train.outputs.map((o) => o.name)).toEqual([
      'best_model',
      'best_weights',
      'history',
      'metadata',
    ]);
    run.results.validate = await validateStep(run.ctx('validate'), localHooks());
    expect(run.results.validate.summary).toMatchObject({ engine: 'onnx', backend: 'onnxruntime' });
    run.results.checkpoint = await checkpointStep(run.ctx('checkpoint'), localHooks());
    run.results.threshold = await thresholdStep(run.ctx('threshold'), localHooks());
    run.results.report = await reportStep(run.ctx('report'), localHooks());
    // The test split's bright boxes are found (the faint ones may not be).
    expect(run.results.report.summary.imageAuroc as number).toBeGreaterThan(0.6);
    run.results.package = await packageStep(run.ctx('package'), localHooks());
    const pkg = await loadModelPackage(join(run.runDir, 'widget', 'package', 'package'));
    expect(pkg.metadata.architecture).toMatchObject({ name: 'patchcore', backbone: 'efficientnet-lite2' });
    expect(pkg.model).toBeInstanceOf(PatchcoreModel);
    // The package scores as the validate step did.
    await expectPackageScoresAsValidate(run, pkg.model, 4);
    await expect(
      createScoringEngine('tfjs', [{ model: pkg.model, anomalyMap: config.anomaly_map }]),
    ).rejects.toThrow(/PatchCore models score on ONNX Runtime only/);
  });
});

function patchcoreInfoDefaults() {
  return patchcoreSchema.parse({});
}

function fakeInfo(fit: {
  featureDim: number;
  grid: number;
  bankSize: number;
  trainPatches: number;
  onnx: Uint8Array;
}) {
  return patchcoreInfoSchema.parse({
    kind: 'patchcore',
    imageSize: SIZE,
    backbone: { name: 'efficientnet-lite0', source: {} },
    strides: [8, 16],
    neighbourhood: 3,
    featureDim: fit.featureDim,
    grid: fit.grid,
    bankSize: fit.bankSize,
    trainPatches: fit.trainPatches,
    coresetRatio: 1,
    projectionDim: 128,
    smoothingSigma: 0,
    onnxSha256: '0'.repeat(64),
    fit: {},
  });
}
