/**
 * The DRAEM-style model kind (lib/models/draem, lib/train/draem-trainer): the generated gradient of the
 * whole training graph (both U-Nets and the L2 + SSIM + focal loss) against finite differences; resume
 * after a cancelled attempt continues the exact run (same weights as an uninterrupted one) and skips a
 * corrupt newest checkpoint; training lowers the loss; and the kind runs through train, validate,
 * checkpoint, threshold, report and package, its package scoring as validate did.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DraemConfig, draemSchema, type TrainingConfig } from '../lib/config/schema';
import { type CachedSplit, readCachedSplit } from '../lib/data/tensor-cache';
import { createScoringEngine } from '../lib/eval/scoring-engine';
import { thresholdStep } from '../lib/eval/threshold-step';
import { validateStep } from '../lib/eval/validate-step';
import { buildTrainGraph, draemNetworks, gradOf, paramShapes, TRAIN_LOSS } from '../lib/models/draem/graphs';
import { DraemModel } from '../lib/models/draem/model';
import { initParams, unetLayers } from '../lib/models/draem/network';
import { loadModelPackage } from '../lib/package/package';
import { packageStep } from '../lib/package/package-step';
import { reportStep } from '../lib/report/report-step';
import { localHooks } from '../lib/steps/contracts';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { DraemTrainingCancelled, trainDraem } from '../lib/train/draem-trainer';
import { trainStep } from '../lib/train/train-step';
import { Rng } from '../lib/util/rng';
import { type EvalRun, expectPackageScoresAsValidate, makeEvalRun } from './support/eval-run';
import { useWasm } from './support/tiny-package';

const TINY = { recon_widths: [4, 8], disc_widths: [4, 8], batch_size: 4 };

describe('draem training graph', () => {
  it('has the gradient of finite differences for parameters of both nets', async () => {
    const n = draemNetworks(16, [4, 8], [4, 8]);
    const session = await ort.InferenceSession.create(
      buildTrainGraph(n, { l2: 1, ssim: 1, focal: 1, focalGamma: 2 }),
      { intraOpNumThreads: 1 },
    );
    const rng = new Rng(1);
    const params = initParams([...unetLayers(n.reconstructive), ...unetLayers(n.discriminative)], rng);
    expect(params.map((p) => p.name)).toEqual(paramShapes(n).map((p) => p.name));
    const N = 2;
    const S = 16;
    const aug = Float32Array.from({ length: N * S * S * 3 }, () => rng.next());
    const clean = Float32Array.from({ length: N * S * S * 3 }, () => rng.next());
    const mask = Float32Array.from({ length: N * S * S }, () => (rng.next() > 0.8 ? 1 : 0));
    const run = async () =>
      session.run({
        augmented: new ort.Tensor('float32', aug, [N, S, S, 3]),
        clean: new ort.Tensor('float32', clean, [N, S, S, 3]),
        mask: new ort.Tensor('float32', mask, [N, S, S]),
        ...Object.fromEntries(params.map((p) => [p.name, new ort.Tensor('float32', p.value, p.shape)])),
      });
    const base = await run();
    const checked: string[] = [];
    // First and deep layers of the reconstructive net (the focal term reaches them through the
    // reconstruction), and the discriminative net's head.
    for (const name of [
      'recon/enc0/kernel',
      'recon/enc0/bias',
      'recon/bottleneck/kernel',
      'disc/enc1/kernel',
      'disc/head/kernel',
      'disc/head/bias',
    ]) {
      const p = params.find((q) => q.name === name)!;
      const g = base[gradOf(name)].data as Float32Array;
      expect(g.length).toBe(p.value.length);
      // The entry with the largest gradient: float32 central differences are meaningful there.
      let idx = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[idx])) idx = i;
      const h = 1e-2;
      const orig = p.value[idx];
      p.value[idx] = orig + h;
      const lp = ((await run())[TRAIN_LOSS].data as Float32Array)[0];
      p.value[idx] = orig - h;
      const lm = ((await run())[TRAIN_LOSS].data as Float32Array)[0];
      p.value[idx] = orig;
      const fd = (lp - lm) / (2 * h);
      expect(Math.abs(fd - g[idx])).toBeLessThan(0.08 * Math.abs(g[idx]) + 1e-5);
      checked.push(`${name}[${idx}] ${g[idx].toExponential(2)} vs ${fd.toExponential(2)}`);
    }
    console.log(`draem gradient check: ${checked.join('; ')}`);
    await session.release();
  });
});

describe('draem trainer', () => {
  let work: string;
  let train: CachedSplit;
  let run: EvalRun;
  beforeAll(async () => {
    await useWasm();
    run = await makeEvalRun();
    work = await mkdtemp(join(tmpdir(), 'draem-'));
    train = await readCachedSplit(join(run.runDir, 'widget', 'preprocess'), 'train');
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
    if (run?.runDir) await rm(run.runDir, { recursive: true, force: true });
  });
  const cfg = (over: Partial<DraemConfig> = {}) =>
    draemSchema.parse({ ...TINY, steps: 8, checkpoint_every: 3, ...over });

  it('resumes a cancelled run exactly where it stopped, past a corrupt newest checkpoint', async () => {
    const opts = { train, seed: 5, threads: 1, gradClip: 1 };
    const whole = await trainDraem({ ...opts, cfg: cfg(), checkpointDir: join(work, 'whole') });
    expect(whole.steps).toBe(8);

    const dir = join(work, 'cut');
    const stop = new AbortController();
    const err = await trainDraem({
      ...opts,
      cfg: cfg(),
      checkpointDir: dir,
      signal: stop.signal,
      onProgress: (p) => {
        if (p.step === 5) stop.abort();
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DraemTrainingCancelled);
    // Checkpoints at step 3 and at the cancellation (5): the newest is corrupted, 3 must be used.
    expect((await readdir(dir)).sort()).toEqual(['step-000003', 'step-000005']);
    await writeFile(join(dir, 'step-000005', 'params.bin'), 'truncated');
    const lines: string[] = [];
    const resumed = await trainDraem({ ...opts, cfg: cfg(), checkpointDir: dir, log: (l) => lines.push(l) });
    expect(resumed.resumedFrom).toBe(join(dir, 'step-000003'));
    expect(lines.join('\n')).toMatch(/step-000005 unusable \(params\.bin checksum mismatch\)/);
    expect(resumed.steps).toBe(8);
    for (let i = 0; i < whole.params.length; i++)
      expect(resumed.params[i].value).toEqual(whole.params[i].value);
    expect(resumed.history.map((h) => h.loss)).toEqual(whole.history.map((h) => h.loss));
  });

  it('lowers the loss over a few dozen steps', async () => {
    const r = await trainDraem({
      train,
      seed: 2,
      threads: 2,
      gradClip: 1,
      cfg: cfg({ steps: 60, lr: 2e-3, checkpoint_every: 60 }),
      checkpointDir: join(work, 'learn'),
    });
    const first = r.history[0];
    const last = r.history.at(-1)!;
    console.log(
      `draem loss: ${first.loss.toFixed(4)} -> ${last.loss.toFixed(4)} (focal ${first.focal.toFixed(4)} -> ${last.focal.toFixed(4)})`,
    );
    expect(last.loss).toBeLessThan(0.8 * first.loss);
    expect(last.focal).toBeLessThan(first.focal);
  });

  it('refuses an image size its U-Nets cannot halve, naming the key', async () => {
    await expect(
      trainDraem({
        train,
        seed: 1,
        threads: 1,
        gradClip: null,
        cfg: cfg({ disc_widths: [4, 8, 16, 32, 64, 128] }),
        checkpointDir: join(work, 'bad'),
      }),
    ).rejects.toThrow(/model\.draem\.disc_widths: draem: image size 32 must be divisible by 2\^6/);
  });
});

describe('draem as a model kind', () => {
  let run: EvalRun;
  let config: TrainingConfig;
  beforeAll(async () => {
    await useWasm();
    run = await makeEvalRun();
    config = {
      ...run.config,
      model: { ...run.config.model, kind: 'draem', draem: { ...TINY, steps: 12, checkpoint_every: 6 } },
    } as TrainingConfig;
    run.config.model = config.model;
  });
  afterAll(async () => {
    if (run?.runDir) await rm(run.runDir, { recursive: true, force: true });
  });

  it('runs through train, validate, checkpoint, threshold, report and package; the package scores as validate did', async () => {
    run.results.train = await trainStep(run.ctx('train'), localHooks());
    expect(run.results.train.summary).toMatchObject({ modelKind: 'draem', engine: 'onnx', stepsRun: 12 });
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
    run.results.package = await packageStep(run.ctx('package'), localHooks());
    const pkg = await loadModelPackage(join(run.runDir, 'widget', 'package', 'package'));
    expect(pkg.metadata.architecture).toMatchObject({ name: 'draem', reconWidths: [4, 8], steps: 12 });
    expect(pkg.model).toBeInstanceOf(DraemModel);
    const maps = await expectPackageScoresAsValidate(run, pkg.model, 5);
    // A probability map: every value in [0, 1].
    expect(Math.min(...maps)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...maps)).toBeLessThanOrEqual(1);
    await expect(
      createScoringEngine('tfjs', [{ model: pkg.model, anomalyMap: config.anomaly_map }]),
    ).rejects.toThrow(/DRAEM models score on ONNX Runtime only/);
  });
});
