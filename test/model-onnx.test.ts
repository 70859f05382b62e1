import '@tensorflow/tfjs-backend-wasm';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { anomalyMapSchema } from '../lib/config/schema';
import { scoreImages } from '../lib/eval/anomaly-map';
import { tfSamePads } from '../lib/models/autoencoder/export';
import { createOnnxReconstructor } from '../lib/models/autoencoder/runner';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { startServer } from '../lib/serve/start';
import { rand, randomizeBiases } from './support/random-model';
import { makeTinyPackage, testImage } from './support/tiny-package';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

async function maxDiff(size: number, widths: number[], n: number, seed: number): Promise<number> {
  const model = buildUNetLite({ imageSize: size, widths, seed });
  randomizeBiases(model);
  const images = rand(n * size * size * 3, seed);
  const expected = tf.tidy(
    () => (model.predict(tf.tensor4d(images, [n, size, size, 3])) as tf.Tensor).dataSync() as Float32Array,
  );
  const onnx = await createOnnxReconstructor(model, { threads: 1 });
  try {
    const got = await onnx.reconstruct(images, n, size);
    expect(got.length).toBe(expected.length);
    let d = 0;
    for (let i = 0; i < got.length; i++) d = Math.max(d, Math.abs(got[i] - expected[i]));
    return d;
  } finally {
    await onnx.release();
    model.dispose();
  }
}

describe('ONNX export of U-Net-lite', () => {
  it('TF same padding: stride 2 on even sizes pads 0 before, 1 after; stride 1 k3 pads 1/1', () => {
    expect(tfSamePads(32, 3, 2)).toEqual([0, 1]);
    expect(tfSamePads(33, 3, 2)).toEqual([1, 1]);
    expect(tfSamePads(32, 3, 1)).toEqual([1, 1]);
    expect(tfSamePads(32, 1, 1)).toEqual([0, 0]);
  });

  it('32 px, widths [4, 8]: ONNX Runtime output equals tfjs predict within 1e-4', async () => {
    expect(await maxDiff(32, [4, 8], 3, 7)).toBeLessThan(1e-4);
  });

  it('64 px, widths [8, 16, 32]: equal within 1e-4 (batch 2, then batch 1 on the same session shape)', async () => {
    expect(await maxDiff(64, [8, 16, 32], 2, 11)).toBeLessThan(1e-4);
    expect(await maxDiff(64, [8, 16, 32], 1, 12)).toBeLessThan(1e-4);
  });

  it('scoreImages with the ONNX reconstruct (batches at non-zero offsets) matches the tfjs path', async () => {
    const model = buildUNetLite({ imageSize: 32, widths: [4, 8], seed: 3 });
    randomizeBiases(model);
    const n = 5;
    const images = rand(n * 32 * 32 * 3, 5);
    const cfg = anomalyMapSchema.parse({});
    const onnx = await createOnnxReconstructor(model, { threads: 1 });
    try {
      const before = tf.memory().numTensors;
      const a = await scoreImages(model, images, n, 32, cfg, 2);
      const b = await scoreImages(model, images, n, 32, cfg, 2, { reconstruct: onnx.reconstruct });
      expect(tf.memory().numTensors).toBe(before);
      for (let i = 0; i < n; i++) expect(Math.abs(a.scores[i] - b.scores[i])).toBeLessThan(1e-4);
      let d = 0;
      for (let i = 0; i < a.maps.length; i++) d = Math.max(d, Math.abs(a.maps[i] - b.maps[i]));
      expect(d).toBeLessThan(1e-4);
    } finally {
      await onnx.release();
      model.dispose();
    }
  });

  it('rejects images of the wrong size', async () => {
    const model = buildUNetLite({ imageSize: 32, widths: [4, 8] });
    const onnx = await createOnnxReconstructor(model, { threads: 1 });
    await expect(onnx.reconstruct(new Float32Array(64 * 64 * 3), 1, 64)).rejects.toThrow(/64x64/);
    await onnx.release();
    model.dispose();
  });

  it("startServer({ engine: 'onnx' }) answers /v1/predict with the tfjs engine's score", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'onnx-serve-'));
    try {
      const pkg = join(dir, 'package');
      await makeTinyPackage(pkg);
      const image = (await testImage('png', { defect: true })).toString('base64');
      const scores: number[] = [];
      for (const engine of ['tfjs', 'onnx'] as const) {
        const server = await startServer({ models: pkg, port: 0, logger: false, engine, engineThreads: 1 });
        try {
          const res = await server.app.inject({
            method: 'POST',
            url: '/v1/predict?heatmap=false',
            payload: { category: 'widget', image },
          });
          expect(res.statusCode).toBe(200);
          scores.push((res.json() as { score: number }).score);
        } finally {
          await server.app.close();
        }
      }
      expect(Math.abs(scores[0] - scores[1])).toBeLessThan(1e-4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
