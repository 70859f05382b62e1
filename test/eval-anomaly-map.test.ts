import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { anomalyMapSchema } from '../lib/config/schema';
import {
  imageScore,
  imageScoreTensor,
  resizeMaps,
  scoreBorder,
  scoreImages,
  smoothMaps,
} from '../lib/eval/anomaly-map';
import { buildUNetLite } from '../lib/models/autoencoder/unet';

const S = 32;
const N = 5;
let model: tf.LayersModel;
let images: Float32Array;

beforeAll(async () => {
  await tf.setBackend('wasm');
  model = buildUNetLite({ imageSize: S, widths: [4, 8], seed: 1 });
  images = Float32Array.from({ length: N * S * S * 3 }, (_, i) => (Math.sin(i * 0.37) + 1) / 2);
});

describe('anomaly maps', () => {
  it('mse-only, unsmoothed map is the channel-mean squared error; score is its max; no tensor leaks', async () => {
    const cfg = anomalyMapSchema.parse({ mse_weight: 1, ssim_weight: 0, smoothing_sigma: 0 });
    const before = tf.memory().numTensors;
    const r = await scoreImages(model, images, N, S, cfg, 2);
    expect(tf.memory().numTensors).toBe(before);
    expect(r.maps.length).toBe(N * S * S);
    expect(r.latencyMs.length).toBe(N);
    const recon = tf.tidy(() => (model.predict(tf.tensor4d(images, [N, S, S, 3])) as tf.Tensor).dataSync());
    for (const p of [0, 77, S * S * 3 + 5, N * S * S - 1]) {
      let e = 0;
      for (let c = 0; c < 3; c++) e += (images[p * 3 + c] - recon[p * 3 + c]) ** 2;
      expect(r.maps[p]).toBeCloseTo(e / 3, 5);
    }
    for (let i = 0; i < N; i++)
      expect(r.scores[i]).toBeCloseTo(imageScore(r.maps.subarray(i * S * S, (i + 1) * S * S), S, S, cfg), 6);
  });

  it('default config (mse + ssim, smoothing, top-k mean) gives finite maps and top-k scores of the interior', async () => {
    const cfg = anomalyMapSchema.parse({ score: 'topk_mean', topk: 10 });
    const r = await scoreImages(model, images, N, S, cfg);
    expect(r.maps.every(Number.isFinite)).toBe(true);
    // score_border 0.05 of 32 px: the outermost pixel on each edge is left out of the score.
    const interior = [...r.maps.subarray(0, S * S)].filter((_, i) => {
      const [x, y] = [i % S, Math.floor(i / S)];
      return x >= 1 && x < S - 1 && y >= 1 && y < S - 1;
    });
    const top = interior.sort((a, b) => b - a).slice(0, 10);
    expect(r.scores[0]).toBeCloseTo(top.reduce((a, b) => a + b, 0) / 10, 5);
  });

  it('the image score leaves out score_border of each edge; the map keeps every pixel', () => {
    // 20 x 20 map: 5 in a corner, 3 two pixels in from the left edge, 1 in the middle.
    const map = new Float32Array(400);
    map[0] = 5;
    map[10 * 20 + 2] = 3;
    map[10 * 20 + 10] = 1;
    const score = (border: number) => {
      const cfg = anomalyMapSchema.parse({ score_border: border });
      const t = tf.tidy(() => imageScoreTensor(tf.tensor3d(map, [1, 20, 20]), cfg).dataSync()[0]);
      expect(imageScore(map, 20, 20, cfg)).toBe(t);
      return t;
    };
    expect(score(0)).toBe(5);
    expect(score(0.05)).toBe(3); // 1 px
    expect(score(0.15)).toBe(1); // 3 px
    expect(scoreBorder(20, 20, anomalyMapSchema.parse({ score_border: 0.25 }))).toEqual({ y: 5, x: 5 });
    expect(scoreBorder(3, 3, anomalyMapSchema.parse({ score_border: 0.25 }))).toEqual({ y: 0, x: 0 });
    expect(anomalyMapSchema.safeParse({ score_border: 0.3 }).success).toBe(false);
  });

  it('smoothing keeps a constant map constant (mirror padding) and sums are preserved', () => {
    const out = tf.tidy(() => smoothMaps(tf.fill([1, 16, 16, 1], 0.25) as tf.Tensor4D, 2).dataSync());
    for (const v of out) expect(v).toBeCloseTo(0.25, 6);
  });

  it('resizes maps to the mask size', () => {
    const m = resizeMaps(new Float32Array(2 * 4 * 4).fill(1), 2, 4, 8);
    expect(m.length).toBe(2 * 64);
    expect(m.every((v) => Math.abs(v - 1) < 1e-6)).toBe(true);
  });

  it('refuses all-zero weights with a config error', async () => {
    const cfg = anomalyMapSchema.parse({ mse_weight: 0, ssim_weight: 0 });
    await expect(scoreImages(model, images, N, S, cfg)).rejects.toThrow(/anomaly_map.mse_weight/);
  });
});
