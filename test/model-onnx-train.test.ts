/**
 * The ONNX Runtime training engine: its hand-written backward graph against tfjs' autodiff of the
 * same model, and one engine step (loss gradient, clipping, Adam/AdamW, state sync) against the tfjs
 * engine's step on identical models.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TrainingConfig } from '../lib/config/schema';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import {
  activationName,
  biasName,
  buildBackwardGraph,
  buildForwardGraph,
  gradName,
  kernelName,
  TRAIN_INPUT,
  TRAIN_OUTPUT,
  TRAIN_OUTPUT_GRAD,
  unetConvLayers,
} from '../lib/models/autoencoder/train-graph';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { adamStep, clipByGlobalNorm } from '../lib/train/adam';
import { createTrainEngine, type TrainEngine } from '../lib/train/engine';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer, TfjsTrainEngine } from '../lib/train/tfjs-train-engine';
import { train } from '../lib/train/trainer';
import { tinyConfig, tinySplit } from './support/train-fixtures';

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

/** Largest |a - b| relative to the largest |b| (gradients span several orders of magnitude). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let err = 0;
  let mag = 1e-12;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return err / mag;
}

function modelWithRandomBiases(size: number, widths: number[], seed: number): tf.LayersModel {
  const model = buildUNetLite({ imageSize: size, widths, seed });
  for (const l of model.layers) {
    const w = l.getWeights();
    if (w.length === 2) l.setWeights([w[0], tf.randomNormal(w[1].shape, 0, 0.1, 'float32', seed + 11)]);
  }
  return model;
}

describe('ONNX training graphs', () => {
  it('names the layers of buildUNetLite with their shapes', () => {
    const model = buildUNetLite({ imageSize: 32, widths: [4, 8] });
    const layers = unetConvLayers(32, [4, 8]);
    expect(layers.map((l) => l.name)).toEqual(
      model.layers.filter((l) => l.getClassName() === 'Conv2D').map((l) => l.name),
    );
    for (const l of layers) {
      expect(model.getLayer(l.name).getWeights()[0].shape).toEqual([l.k, l.k, l.ci, l.co]);
    }
    expect(() => unetConvLayers(20, [4, 8, 16])).toThrow(/divisible by 2\^3/);
  });

  // Odd channel counts, 1-3 levels, batch 1 and 3, 16-64 px: every gradient equals tfjs' autodiff.
  it.each([
    { size: 16, widths: [4], n: 1 },
    { size: 32, widths: [3, 5], n: 3 },
    { size: 64, widths: [4, 6, 8], n: 2 },
  ])(
    'forward and every parameter gradient equal tfjs autodiff: $size px, widths $widths, batch $n',
    async ({ size, widths, n }) => {
      const model = modelWithRandomBiases(size, widths, n);
      const layers = unetConvLayers(size, widths);
      const fwd = await ort.InferenceSession.create(buildForwardGraph(size, widths));
      const bwd = await ort.InferenceSession.create(buildBackwardGraph(size, widths));
      const x = tf.randomUniform([n, size, size, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      const xd = x.dataSync() as Float32Array;
      const image = new ort.Tensor('float32', xd, [n, size, size, 3]);
      const params: Record<string, ort.Tensor> = {};
      const kernels: Record<string, ort.Tensor> = {};
      for (const l of layers) {
        const [k, b] = model.getLayer(l.name).getWeights();
        kernels[kernelName(l.name)] = new ort.Tensor('float32', k.dataSync() as Float32Array, k.shape);
        params[biasName(l.name)] = new ort.Tensor('float32', b.dataSync() as Float32Array, b.shape);
      }
      const f = await fwd.run({ [TRAIN_INPUT]: image, ...params, ...kernels });
      const pred = f[TRAIN_OUTPUT].data as Float32Array;
      expect(relErr(pred, (model.predict(x) as tf.Tensor).dataSync())).toBeLessThan(1e-5);

      // Loss sum(pred * r) with a random r: its gradient w.r.t. pred is r, exercising every path.
      const r = tf.randomNormal([n, size, size, 3], 0, 1, 'float32', 9);
      const feeds: Record<string, ort.Tensor> = {
        [TRAIN_INPUT]: image,
        [TRAIN_OUTPUT_GRAD]: new ort.Tensor('float32', r.dataSync() as Float32Array, [n, size, size, 3]),
        ...kernels,
      };
      for (const l of layers) feeds[activationName(l.name)] = f[activationName(l.name)];
      const b = await bwd.run(feeds);

      const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const { grads } = tf.variableGrads(
        () => tf.sum(tf.mul(model.apply(x) as tf.Tensor, r)) as tf.Scalar,
        vars,
      );
      model.trainableWeights.forEach((w, i) => {
        const ours = b[gradName(w.originalName)];
        expect(ours, w.originalName).toBeDefined();
        expect(
          relErr(ours.data as Float32Array, grads[vars[i].name].dataSync()),
          w.originalName,
        ).toBeLessThan(1e-4);
      });
      tf.dispose([x, r, ...Object.values(grads)]);
      model.dispose();
      await fwd.release();
      await bwd.release();
    },
  );
});

describe('Adam on Float32Arrays', () => {
  it('follows tf.train.adam step for step, and clipping scales to the global norm', () => {
    const w0 = [0.5, -1, 2, 0.1];
    const v = tf.variable(tf.tensor1d(w0));
    const opt = tf.train.adam(0.01);
    const slot = { value: Float32Array.from(w0), m: new Float32Array(4), v: new Float32Array(4) };
    for (let t = 0; t < 5; t++) {
      const g = Float32Array.from([0.3, -0.2 * t, 1, 1e-3 * t]);
      opt.applyGradients([{ name: v.name, tensor: tf.tensor1d(g) }]);
      adamStep([slot], [g], 0.01, t);
    }
    expect(relErr(slot.value, v.dataSync())).toBeLessThan(1e-6);
    const g = [Float32Array.from([3, 0]), Float32Array.from([4])];
    expect(clipByGlobalNorm(g, 1)).toBeCloseTo(5);
    expect([...g[0], ...g[1]].map((x) => Number(x.toFixed(6)))).toEqual([0.6, 0, 0.8]);
  });
});

describe('ONNX training engine', () => {
  const cfg = (over: Record<string, unknown> = {}): TrainingConfig =>
    tinyConfig({
      grad_clip: 0.05,
      optimizer: { name: 'adamw', lr: 1e-3, weight_decay: 0.01 },
      loss: { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0 },
      threads: 1,
      ...over,
    });

  async function engines(c: TrainingConfig) {
    const make = async (kind: 'onnx' | 'tfjs') => {
      const model = buildUNetLite({ imageSize: c.image_size, widths: c.model.widths, seed: 3 });
      const optimizer = createOptimizer(c);
      const loss = await createLoss(c.loss, c.image_size);
      const engine: TrainEngine =
        kind === 'onnx'
          ? await OnnxTrainEngine.create(model, optimizer, loss, c, { threads: 1 })
          : new TfjsTrainEngine(model, optimizer, loss, c, 'tfjs wasm');
      return { model, optimizer, loss, engine };
    };
    return { onnx: await make('onnx'), tfjs: await make('tfjs') };
  }

  const batch = (c: TrainingConfig, n: number, seed: number) => {
    const split = tinySplit(n, c.image_size, seed);
    return Float32Array.from(split.images, (v) => v / 255);
  };

  it('takes the same steps as the tfjs engine (full loss, clipping, AdamW) and syncs its state back', async () => {
    const c = cfg();
    const { onnx, tfjs } = await engines(c);
    for (let s = 0; s < 3; s++) {
      const images = batch(c, 3, s + 1);
      // Step 1 trains towards other targets (as with synthetic defects: input != target).
      const targets = s === 1 ? batch(c, 3, 7) : images;
      let expected: number | undefined;
      if (s === 1) {
        const v = tf.tidy(() => {
          const shape: [number, number, number, number] = [3, c.image_size, c.image_size, 3];
          const pred = tfjs.model.predict(tf.tensor4d(images, shape)) as tf.Tensor4D;
          return tfjs.loss.compute(tf.tensor4d(targets, shape), pred).total;
        });
        expected = (await v.data())[0];
        v.dispose();
      }
      const a = await onnx.engine.step(images, 3, 1e-3, targets);
      const b = await tfjs.engine.step(images, 3, 1e-3, targets);
      expect(a.loss).toBeCloseTo(b.loss, 4);
      if (expected !== undefined) expect(b.loss).toBeCloseTo(expected, 4);
      for (const k of ['mse', 'ssim', 'edge'] as const) expect(a.terms[k]).toBeCloseTo(b.terms[k] ?? NaN, 4);
    }
    // Validation loss of the same weights-to-be on both engines (evaluate does not update).
    const held = batch(c, 2, 9);
    expect(await onnx.engine.evaluate(held, 2)).toBeCloseTo(await tfjs.engine.evaluate(held, 2), 4);
    await onnx.engine.syncToModel();
    const wa = onnx.model.getWeights();
    const wb = tfjs.model.getWeights();
    // Three Adam steps of lr 1e-3 moved the weights by ~3e-3; the engines agree to ~1e-5.
    wa.forEach((w, i) => {
      const moved = relErr(wb[i].dataSync(), tf.tensor(w.dataSync()).dataSync());
      expect(relErr(w.dataSync(), wb[i].dataSync()), `weight ${i} (moved ${moved})`).toBeLessThan(1e-3);
    });
    const sa = await onnx.optimizer.getWeights();
    const sb = await tfjs.optimizer.getWeights();
    expect(sa.length).toBe(sb.length);
    expect((await sa[0].tensor.data())[0]).toBe(3);
    for (let i = 1; i < sa.length; i++)
      expect(relErr(sa[i].tensor.dataSync(), sb[i].tensor.dataSync()), sa[i].name).toBeLessThan(1e-2);
    for (const e of [onnx, tfjs]) {
      await e.engine.release();
      e.model.dispose();
      e.optimizer.dispose();
      e.loss.dispose();
    }
  });

  it('continues exactly from state synced into the model and optimizer (resume), without leaking tensors', async () => {
    const c = cfg({ grad_clip: null, optimizer: { name: 'adam', lr: 1e-3, weight_decay: 0 } });
    const { onnx } = await engines(c);
    await onnx.engine.step(batch(c, 2, 1), 2, 1e-3);
    await onnx.engine.syncToModel();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await onnx.engine.step(batch(c, 2, 2), 2, 1e-3);
      await onnx.engine.syncToModel();
    }
    expect(tf.memory().numTensors).toBe(before);

    // A second engine built from the synced model + optimizer takes the same next step as the first.
    const second = await OnnxTrainEngine.create(onnx.model, onnx.optimizer, onnx.loss, c, { threads: 1 });
    const next = batch(c, 2, 3);
    const a = await onnx.engine.step(next, 2, 1e-3);
    const b = await second.step(next, 2, 1e-3);
    expect(b.loss).toBe(a.loss);
    await onnx.engine.syncToModel();
    const w1 = onnx.model.getWeights().map((w) => Array.from(w.dataSync()));
    await second.syncToModel();
    const w2 = onnx.model.getWeights().map((w) => Array.from(w.dataSync()));
    expect(w2).toEqual(w1);
    await second.release();
    await onnx.engine.release();
  });

  it('auto picks ONNX Runtime on wasm; tfjs on request; train() records the engine', async () => {
    const c = cfg();
    const model = buildUNetLite({ imageSize: 32, widths: c.model.widths });
    const optimizer = createOptimizer(c);
    const loss = await createLoss(c.loss, 32);
    const auto = await createTrainEngine({ model, optimizer, loss, config: c, backend: 'wasm' });
    expect(auto.engine.name).toBe('onnx');
    expect(auto.engine.description).toMatch(/ONNX Runtime .*1 thread/);
    await auto.engine.release();
    const forced = await createTrainEngine({
      model,
      optimizer,
      loss,
      config: { ...c, engine: 'tfjs' },
      backend: 'wasm',
    });
    expect(forced.engine.name).toBe('tfjs');
    const gpu = await createTrainEngine({ model, optimizer, loss, config: c, backend: 'webgpu' });
    expect(gpu.engine.name).toBe('tfjs');

    // The whole trainer (shuffling, augmentation, validation, checkpoints) on both engines: same curve.
    const run = async (engine: 'onnx' | 'tfjs') =>
      train({
        config: tinyConfig({ epochs: 2, engine }),
        train: tinySplit(8),
        val: tinySplit(4, 32, 3, 'val'),
        checkpointDir: await mkdtemp(join(tmpdir(), `train-${engine}-`)),
      });
    const result = await run('onnx');
    const reference = await run('tfjs');
    expect(result.engine.name).toBe('onnx');
    expect(reference.engine.name).toBe('tfjs');
    expect(result.epochsRun).toBe(2);
    result.history.forEach((h, i) => {
      expect(h.loss).toBeCloseTo(reference.history[i].loss, 4);
      expect(h.valLoss).toBeCloseTo(reference.history[i].valLoss, 4);
    });
    reference.model.dispose();
    result.model.dispose();
  });
});
