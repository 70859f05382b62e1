import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { focalLoss, focalLossFromLogits } from '../lib/models/autoencoder/focal-loss';
import {
  buildFocalLossGraph,
  FOCAL_GRAD,
  FOCAL_LOSS,
  FOCAL_MASK,
  FOCAL_PROB,
} from '../lib/models/autoencoder/focal-loss-graph';

describe('focal loss', () => {
  it('focal loss on hand cases', () => {
    // gamma 0, no alpha: binary cross-entropy.
    expect(focalLoss([0.8], [1], { gamma: 0 }).loss).toBeCloseTo(-Math.log(0.8), 6);
    expect(focalLoss([0.8], [0], { gamma: 0 }).loss).toBeCloseTo(-Math.log(0.2), 6);
    // gamma 2: p = 0.5 on an anomalous pixel: 0.25 ln 2.
    expect(focalLoss([0.5], [1]).loss).toBeCloseTo(0.25 * Math.LN2, 6);
    // A confident mistake on a normal pixel: p_t = 0.1, 0.81 * ln 10.
    expect(focalLoss([0.9], [0]).loss).toBeCloseTo(0.81 * Math.LN10, 5);
    // A well-classified pixel (p_t = 0.9) weighs 100x less than in cross-entropy.
    const easy = focalLoss([0.9], [1]).loss;
    expect(easy / focalLoss([0.9], [1], { gamma: 0 }).loss).toBeCloseTo(0.01, 6);
    // Perfect prediction: 0 (no NaN at p = 1 or p = 0).
    expect(focalLoss([1, 0], [1, 0]).loss).toBe(0);
    // The clamp: p_t = 0 costs -log(eps), finite.
    expect(focalLoss([0], [1], { eps: 1e-6 }).loss).toBeCloseTo(-Math.log(1e-6), 4);
    // alpha weighs positives by alpha, negatives by 1 - alpha.
    expect(focalLoss([0.5], [1], { alpha: 0.25 }).loss).toBeCloseTo(0.25 * 0.25 * Math.LN2, 6);
    expect(focalLoss([0.5], [0], { alpha: 0.25 }).loss).toBeCloseTo(0.75 * 0.25 * Math.LN2, 6);
    // Mean over pixels by default, sum on request.
    const two = focalLoss([0.5, 0.9], [1, 0]);
    expect(two.loss).toBeCloseTo((0.25 * Math.LN2 + 0.81 * Math.LN10) / 2, 5);
    expect(focalLoss([0.5, 0.9], [1, 0], { reduction: 'sum' }).loss).toBeCloseTo(2 * two.loss, 5);
    // Soft masks interpolate p_t.
    expect(focalLoss([0.7], [0.5], { gamma: 0 }).loss).toBeCloseTo(-Math.log(0.5), 6);
    expect(() => focalLoss([0.5], [1, 0])).toThrow(/mask/);
    expect(() => focalLoss([0.5], [1], { alpha: 2 })).toThrow(/alpha/);
  });

  it('gradients equal finite differences (probabilities and logits)', () => {
    const p = [0.1, 0.35, 0.5, 0.8, 0.97, 0.6];
    const m = [0, 1, 1, 0, 1, 0.3];
    const h = 1e-6;
    for (const opts of [
      {},
      { gamma: 0 },
      { gamma: 1.5, alpha: 0.25 },
      { gamma: 3, reduction: 'sum' as const },
    ]) {
      const { grad } = focalLoss(p, m, opts);
      p.forEach((_, i) => {
        const up = p.map((v, j) => (j === i ? v + h : v));
        const dn = p.map((v, j) => (j === i ? v - h : v));
        const fd = (focalLoss(up, m, opts).loss - focalLoss(dn, m, opts).loss) / (2 * h);
        expect(grad[i]).toBeCloseTo(fd, 4);
      });
      const z = p.map((v) => Math.log(v / (1 - v)));
      const gz = focalLossFromLogits(z, m, opts).grad;
      z.forEach((_, i) => {
        const up = z.map((v, j) => (j === i ? v + h : v));
        const dn = z.map((v, j) => (j === i ? v - h : v));
        const fd = (focalLossFromLogits(up, m, opts).loss - focalLossFromLogits(dn, m, opts).loss) / (2 * h);
        expect(gz[i]).toBeCloseTo(fd, 4);
      });
    }
  });
});

describe('focal loss as an ONNX graph (generated gradient)', () => {
  it.each([{}, { gamma: 0 }, { gamma: 1.5, alpha: 0.25 }, { gamma: 2, alpha: 0.75, eps: 1e-4 }])(
    'equals the JS focal loss and its gradient: %o',
    async (opts) => {
      const shape = [2, 1, 4, 4];
      const len = 32;
      const prob = Float32Array.from({ length: len }, (_, i) =>
        i === 3 ? 0 : i === 5 ? 1 : 0.02 + (0.96 * ((i * 37) % 31)) / 31,
      );
      const mask = Float32Array.from({ length: len }, (_, i) => (i % 3 === 0 ? 1 : i % 7 === 0 ? 0.5 : 0));
      const session = await ort.InferenceSession.create(buildFocalLossGraph(['N', 1, 4, 4], opts), {
        intraOpNumThreads: 1,
      });
      const out = await session.run({
        [FOCAL_PROB]: new ort.Tensor('float32', prob, shape),
        [FOCAL_MASK]: new ort.Tensor('float32', mask, shape),
      });
      const ref = focalLoss(prob, mask, opts);
      expect(out[FOCAL_LOSS].data[0]).toBeCloseTo(ref.loss, 5);
      const g = out[FOCAL_GRAD].data as Float32Array;
      for (let i = 0; i < len; i++) expect(g[i]).toBeCloseTo(ref.grad[i], 5);
    },
  );
});
