/** Reconstruction losses with known values. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { saveModel } from '../lib/model/io';
import { ssimMap } from '../lib/model/ssim';
import { createLoss, edgeLoss, mseLoss, sobelMagnitude, ssimLoss } from '../lib/models/autoencoder/losses';

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

const S = 32;
const constant = (v: number) => tf.fill([1, S, S, 3], v) as tf.Tensor4D;
const val = (t: tf.Tensor) => t.dataSync()[0];
/** Vertical step edge: 0 left of column 16, 1 from column 16 on. */
const step = () =>
  tf.tidy(
    () =>
      tf.tile(tf.concat([tf.zeros([1, S, 16, 1]), tf.ones([1, S, 16, 1])], 2), [1, 1, 1, 3]) as tf.Tensor4D,
  );

describe('losses', () => {
  it('identical images give 0 for every term', async () => {
    const x = tf.randomUniform([2, S, S, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    expect(val(mseLoss(x, x))).toBe(0);
    expect(Math.abs(val(ssimLoss(x, x)))).toBeLessThan(1e-5);
    expect(val(edgeLoss(x, x))).toBe(0);
    const loss = await createLoss(
      { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0, perceptual_model: null, perceptual_backbone: 'none' },
      S,
    );
    const out = loss.compute(x, x);
    expect(Math.abs(val(out.total))).toBeLessThan(1e-5);
    expect(Object.keys(out.terms).sort()).toEqual(['edge', 'mse', 'ssim']);
  });

  it('MSE of constant images is the squared difference of the means', () => {
    expect(val(mseLoss(constant(0.2), constant(0.7)))).toBeCloseTo(0.25, 6);
  });

  it('SSIM of constant images with different means follows the luminance term', () => {
    const [a, b] = [0.2, 0.6];
    const c1 = 0.01 ** 2;
    const expected = (2 * a * b + c1) / (a * a + b * b + c1); // sigma = 0: contrast/structure terms are 1
    const map = ssimMap(constant(a), constant(b));
    // The centre pixel's 11x11 window lies inside the image (border windows see zero padding).
    const centre = map.slice([0, 16, 16, 0], [1, 1, 1, 1]);
    // float32 variance (E[x^2] - mu^2) costs ~1e-4 of precision.
    expect(val(centre)).toBeCloseTo(expected, 3);
  });

  it('Sobel magnitude of a unit step edge is 4 on the edge and 0 away from it', () => {
    const mag = sobelMagnitude(step());
    const at = (x: number) => val(mag.slice([0, 10, x, 0], [1, 1, 1, 1]));
    expect(at(15)).toBeCloseTo(4, 3);
    expect(at(16)).toBeCloseTo(4, 3);
    expect(at(8)).toBeLessThan(1e-2);
    expect(at(24)).toBeLessThan(1e-2);
    // Edge loss against a flat image: mean |4| over the two edge columns (interior rows), plus borders.
    expect(val(edgeLoss(step(), constant(0)))).toBeGreaterThan(0.2);
  });

  it('perceptual: disabled with a statement when no model is configured', async () => {
    const loss = await createLoss(
      { mse: 1, ssim: 0, edge: 0, perceptual: 0.1, perceptual_model: null, perceptual_backbone: 'none' },
      S,
    );
    expect(loss.weights.perceptual).toBe(0);
    expect(loss.perceptual.enabled).toBe(false);
    expect(loss.perceptual.statement).toMatch(/neither loss.perceptual_model nor loss.perceptual_backbone/);
    const out = loss.compute(constant(0.1), constant(0.3));
    expect(out.terms.perceptual).toBeUndefined();
    expect(val(out.total)).toBeCloseTo(0.04, 5);
  });

  it('perceptual: feature-space L2 through a frozen user model', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'feat-'));
    const input = tf.input({ shape: [null, null, 3] as unknown as number[] });
    const feat = tf.layers
      .conv2d({ filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: 'ones', useBias: false })
      .apply(input) as tf.SymbolicTensor;
    await saveModel(tf.model({ inputs: input, outputs: feat }), dir);
    const loss = await createLoss(
      { mse: 0, ssim: 0, edge: 0, perceptual: 1, perceptual_model: dir, perceptual_backbone: 'none' },
      S,
    );
    expect(loss.perceptual.enabled).toBe(true);
    expect(val(loss.compute(constant(0.5), constant(0.5)).total)).toBe(0);
    // Interior: each feature is the 3x3x3 sum of the input, so a 0.1 shift moves it by 2.7.
    const d = val(loss.compute(constant(0.5), constant(0.6)).terms.perceptual as tf.Scalar);
    expect(d).toBeGreaterThan(2.7 ** 2 * 0.7);
    expect(d).toBeLessThan(2.7 ** 2);
    loss.dispose();
  });
});
