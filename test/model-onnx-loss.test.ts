/**
 * The ONNX loss graph (lib/models/autoencoder/loss-graph) against the tfjs losses it replaces: every term's
 * value and the gradient of the weighted total w.r.t. the reconstruction equal tfjs' autodiff of
 * lib/models/autoencoder/losses; weight-0 terms are not in the graph; the training engine falls back to tfjs for a
 * perceptual model. (test/model-onnx-train.test.ts checks the engine with the graph against the tfjs engine.)
 *
 * Tolerances: term values within 1e-5 absolute (they are means of O(0.1..1) values; float32 sums in a
 * different order differ by ~2e-6); gradients within 1e-4 of max(max |tfjs gradient|, w/M), w/M (weight
 * over element count) being the scale of a mean's gradient, which floors the tolerance where the gradient
 * is analytically 0 (SSIM at p == x: both sides are ~1e-10 of float noise).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LossConfig } from '../lib/config/schema';
import { selectBackend } from '../lib/model/backend';
import { saveModel } from '../lib/model/io';
import {
  buildLossGraph,
  LOSS_GRAD,
  LOSS_PRED,
  LOSS_TARGET,
  LOSS_TOTAL,
  lossTermName,
  type OnnxLossTerm,
} from '../lib/models/autoencoder/loss-graph';
import { createLoss, edgeLoss, type LossTerm, mseLoss, ssimLoss } from '../lib/models/autoencoder/losses';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer, TfjsTrainEngine } from '../lib/train/tfjs-train-engine';
import { tinyConfig, tinySplit } from './support/train-fixtures';

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

const VALUE_TOL = 1e-5;
const GRAD_TOL = 1e-4;

/** Largest |a - b| over max(max |b|, floor). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number {
  expect(a.length).toBe(b.length);
  let err = 0;
  let mag = floor;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return err / mag;
}

/** Target and reconstructions: random, random with flat blocks, and an equal copy of the target. */
function cases(n: number, s: number, seed: number) {
  const x = tf.randomUniform([n, s, s, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
  const p = tf.randomUniform([n, s, s, 3], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
  // Left half flat at 0.4, and one flat quadrant of the right half at 0 (a flat region on the border).
  const flat = tf.tidy(() => {
    const cols = tf.range(0, s).reshape([1, 1, s, 1]);
    const rows = tf.range(0, s).reshape([1, s, 1, 1]);
    const left = tf.less(cols, s / 2);
    const corner = tf.logicalAnd(tf.greaterEqual(cols, s / 2), tf.less(rows, s / 4));
    return tf.where(left, tf.fill(p.shape, 0.4), tf.where(corner, tf.zerosLike(p), p)) as tf.Tensor4D;
  });
  // A distinct tensor: with p === x, tfjs' tape would differentiate through the target too.
  return { x, preds: { random: p, flat, equal: x.clone() } };
}

type Graphs = Map<string, ort.InferenceSession>;
const sessions: Graphs = new Map();
afterAll(async () => {
  for (const s of sessions.values()) await s.release();
});

async function runGraph(
  size: number,
  weights: Partial<Record<LossTerm, number>>,
  x: tf.Tensor4D,
  p: tf.Tensor4D,
) {
  const key = JSON.stringify([size, weights]);
  let session = sessions.get(key);
  if (!session) {
    session = await ort.InferenceSession.create(buildLossGraph(size, weights));
    sessions.set(key, session);
  }
  const feed = (t: tf.Tensor4D) => new ort.Tensor('float32', t.dataSync() as Float32Array, t.shape);
  const out = await session.run({ [LOSS_TARGET]: feed(x), [LOSS_PRED]: feed(p) });
  return { out, names: session.outputNames };
}

const scalar = (t: ort.Tensor) => (t.data as Float32Array)[0];

const TERMS: Record<OnnxLossTerm, (x: tf.Tensor4D, p: tf.Tensor4D) => tf.Scalar> = {
  mse: mseLoss,
  ssim: ssimLoss,
  edge: edgeLoss,
};

describe('ONNX loss graph', () => {
  it.each([
    { n: 2, s: 32, seed: 3 },
    { n: 1, s: 48, seed: 8 },
  ])('each term and its gradient equal tfjs autodiff: $n x $s px', async ({ n, s, seed }) => {
    const { x, preds } = cases(n, s, seed);
    const m = n * s * s * 3;
    for (const [name, p] of Object.entries(preds))
      for (const [term, fn] of Object.entries(TERMS) as [OnnxLossTerm, typeof mseLoss][]) {
        const w = 0.7;
        const { out } = await runGraph(s, { [term]: w }, x, p);
        const what = `${term}, ${name} reconstruction`;
        const value = tf.tidy(() => fn(x, p).dataSync()[0]);
        expect(Math.abs(scalar(out[lossTermName(term)]) - value), what).toBeLessThan(VALUE_TOL);
        expect(Math.abs(scalar(out[LOSS_TOTAL]) - w * value), what).toBeLessThan(VALUE_TOL);
        const grad = tf.tidy(() =>
          tf
            .grad((q: tf.Tensor) => tf.mul(fn(x, q as tf.Tensor4D), w))(p)
            .dataSync(),
        );
        expect(relErr(out[LOSS_GRAD].data as Float32Array, grad, w / m), what).toBeLessThan(GRAD_TOL);
      }
    tf.dispose([x, ...Object.values(preds)]);
  });

  it('the weighted total and its gradient equal createLoss(...).compute under tf.grad', async () => {
    const cfg: LossConfig = {
      mse: 1,
      ssim: 0.5,
      edge: 0.2,
      perceptual: 0,
      perceptual_model: null,
      perceptual_backbone: 'none',
    };
    const loss = await createLoss(cfg, 32);
    const { x, preds } = cases(2, 32, 11);
    for (const [name, p] of Object.entries(preds)) {
      const { out } = await runGraph(32, loss.weights, x, p);
      const ref = tf.tidy(() => {
        const terms: Partial<Record<LossTerm, number>> = {};
        const vg = tf.valueAndGrad((q: tf.Tensor) => {
          const o = loss.compute(x, q as tf.Tensor4D);
          for (const [k, t] of Object.entries(o.terms)) terms[k as LossTerm] = t.dataSync()[0];
          return o.total;
        })(p);
        return { total: vg.value.dataSync()[0], grad: vg.grad.dataSync(), terms };
      });
      expect(Object.keys(ref.terms).sort()).toEqual(['edge', 'mse', 'ssim']);
      expect(Math.abs(scalar(out[LOSS_TOTAL]) - ref.total), name).toBeLessThan(VALUE_TOL);
      for (const [k, v] of Object.entries(ref.terms))
        expect(Math.abs(scalar(out[lossTermName(k as OnnxLossTerm)]) - v), `${k}, ${name}`).toBeLessThan(
          VALUE_TOL,
        );
      expect(relErr(out[LOSS_GRAD].data as Float32Array, ref.grad, 1 / (2 * 32 * 32 * 3)), name).toBeLessThan(
        GRAD_TOL,
      );
    }
    tf.dispose([x, ...Object.values(preds)]);
  });

  it('leaves weight-0 terms out of the graph; all-zero weights give 0; perceptual has no graph', async () => {
    const { x, preds } = cases(1, 32, 5);
    const p = preds.random;
    const mseEdge = await runGraph(32, { mse: 1, ssim: 0, edge: 0.2, perceptual: 0 }, x, p);
    expect([...mseEdge.names].sort()).toEqual(
      [LOSS_GRAD, LOSS_TOTAL, lossTermName('edge'), lossTermName('mse')].sort(),
    );
    const ssimOnly = await runGraph(32, { ssim: 1 }, x, p);
    expect([...ssimOnly.names].sort()).toEqual([LOSS_GRAD, LOSS_TOTAL, lossTermName('ssim')].sort());
    const none = await runGraph(32, { mse: 0, ssim: 0, edge: 0 }, x, p);
    expect([...none.names].sort()).toEqual([LOSS_GRAD, LOSS_TOTAL].sort());
    expect(scalar(none.out[LOSS_TOTAL])).toBe(0);
    expect(Math.max(...(none.out[LOSS_GRAD].data as Float32Array).map(Math.abs))).toBe(0);
    // Without the ssim term the graph holds no Gaussian filter, without edge no Sobel filter.
    const text = (w: Partial<Record<LossTerm, number>>) =>
      new TextDecoder('latin1').decode(buildLossGraph(32, w));
    expect(text({ mse: 1, edge: 0.2 })).not.toMatch(/blur/);
    expect(text({ mse: 1, ssim: 0.5 })).not.toMatch(/sobel/);
    expect(() => buildLossGraph(32, { mse: 1, perceptual: 0.1 })).toThrow(/perceptual/);
    tf.dispose([x, ...Object.values(preds)]);
  });
});

describe('ONNX training engine and the loss', () => {
  it('runs the loss on ONNX Runtime by default, on tfjs for a perceptual model (same step as the tfjs engine)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'feat-'));
    const input = tf.input({ shape: [null, null, 3] as unknown as number[] });
    const feat = tf.layers
      .conv2d({
        filters: 2,
        kernelSize: 3,
        padding: 'same',
        kernelInitializer: 'glorotUniform',
        useBias: false,
      })
      .apply(input) as tf.SymbolicTensor;
    await saveModel(tf.model({ inputs: input, outputs: feat }), dir);
    const withModel = { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0.1, perceptual_model: dir };
    const plain = { ...withModel, perceptual_model: null, perceptual_backbone: 'none' };
    const images = Float32Array.from(tinySplit(2, 32, 4).images, (v) => v / 255);

    for (const lossCfg of [plain, withModel]) {
      const c = tinyConfig({ loss: lossCfg, threads: 1 });
      const make = async () => ({
        model: buildUNetLite({ imageSize: 32, widths: c.model.widths, seed: 3 }),
        optimizer: createOptimizer(c),
        loss: await createLoss(c.loss, 32),
      });
      const a = await make();
      const b = await make();
      const onnx = await OnnxTrainEngine.create(a.model, a.optimizer, a.loss, c, { threads: 1 });
      const ref = new TfjsTrainEngine(b.model, b.optimizer, b.loss, c, 'tfjs wasm');
      expect(onnx.description).toMatch(
        lossCfg.perceptual_model ? /loss and its gradient on tfjs/ : /the loss \(mse, ssim, edge\)/,
      );
      const sa = await onnx.step(images, 2, 1e-3);
      const sb = await ref.step(images, 2, 1e-3);
      expect(Object.keys(sa.terms).sort()).toEqual(Object.keys(sb.terms).sort());
      expect(sa.loss).toBeCloseTo(sb.loss, 5);
      for (const [k, v] of Object.entries(sb.terms)) expect(sa.terms[k as LossTerm]).toBeCloseTo(v ?? NaN, 5);
      await onnx.release();
      for (const e of [a, b]) {
        e.model.dispose();
        e.optimizer.dispose();
        e.loss.dispose();
      }
    }
  });
});
