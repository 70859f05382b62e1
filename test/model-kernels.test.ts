/**
 * The wasm training kernels (lib/model/wasm-kernels) against the reference `cpu` backend:
 * property tests over random conv geometries, a whole-model gradient through every loss, and
 * leak checks (engine tensors and wasm buffers) across many training steps.
 */

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { train } from '../lib/train/trainer';
import { Rng } from '../lib/util/rng';
import { relMaxDiff, tinyConfig, tinySplit } from './support/train-fixtures';

const TOL = 2e-5;

/**
 * The cpu backend's ResizeNearestNeighborGrad is wrong for batch/channels > 1 (checked against the
 * definition in 'resize grad' below), so the cpu reference gets a direct scatter-add for it.
 */
function referenceResizeGrad(
  dy: Float32Array,
  n: number,
  inH: number,
  inW: number,
  outH: number,
  outW: number,
  c: number,
) {
  const dx = new Float32Array(n * inH * inW * c);
  for (let b = 0; b < n; b++)
    for (let y = 0; y < outH; y++)
      for (let x = 0; x < outW; x++)
        for (let ch = 0; ch < c; ch++) {
          const sy = Math.min(inH - 1, Math.floor((y * inH) / outH));
          const sx = Math.min(inW - 1, Math.floor((x * inW) / outW));
          dx[((b * inH + sy) * inW + sx) * c + ch] += dy[((b * outH + y) * outW + x) * c + ch];
        }
  return dx;
}

beforeAll(async () => {
  const info = await selectBackend('wasm', 'train');
  expect(info.name).toBe('wasm');
  tf.unregisterKernel('ResizeNearestNeighborGrad', 'cpu');
  tf.registerKernel({
    kernelName: 'ResizeNearestNeighborGrad',
    backendName: 'cpu',
    kernelFunc: ({ inputs, backend }) => {
      const { images, dy } = inputs as { images: tf.TensorInfo; dy: tf.TensorInfo };
      const be = backend as unknown as {
        readSync(id: object): Float32Array;
        makeTensorInfo(s: number[], d: string, v: Float32Array): tf.TensorInfo;
      };
      const [n, inH, inW, c] = images.shape;
      const [, outH, outW] = dy.shape;
      return be.makeTensorInfo(
        images.shape,
        'float32',
        referenceResizeGrad(be.readSync(dy.dataId), n, inH, inW, outH, outW, c),
      );
    },
  });
});

async function onBackend<T>(name: string, f: () => Promise<T>): Promise<T> {
  const prev = tf.getBackend();
  await tf.setBackend(name);
  try {
    return await f();
  } finally {
    await tf.setBackend(prev);
  }
}

interface ConvCase {
  x: number[];
  f: number[];
  s: number;
  pad: 'same' | 'valid';
}

function randomCases(n: number, seed: number): ConvCase[] {
  const rng = new Rng(seed);
  const out: ConvCase[] = [];
  while (out.length < n) {
    const k = rng.next() < 0.3 ? 1 : 3;
    const s = rng.next() < 0.5 ? 1 : 2;
    const pad = rng.next() < 0.6 ? 'same' : 'valid';
    const h = 3 + rng.int(8); // odd and even sizes
    const w = 3 + rng.int(8);
    if (pad === 'valid' && (h < k || w < k)) continue;
    out.push({ x: [1 + rng.int(3), h, w, 1 + rng.int(5)], f: [k, k, 0, 1 + rng.int(5)], s, pad });
  }
  return out.map((c) => ({ ...c, f: [c.f[0], c.f[1], c.x[3], c.f[3]] }));
}

async function convGrads(c: ConvCase, seed: number): Promise<Float32Array[]> {
  const x = tf.randomNormal(c.x as [number, number, number, number], 0, 1, 'float32', seed) as tf.Tensor4D;
  const w = tf.randomNormal(
    c.f as [number, number, number, number],
    0,
    1,
    'float32',
    seed + 1,
  ) as tf.Tensor4D;
  const proj = tf.randomNormal([1], 0, 1, 'float32', seed + 2);
  // Weighted sum of the output makes dy non-uniform.
  const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf
      .conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad)
      .mul(proj)
      .sin()
      .sum(),
  )([x, w]);
  const out = [(await g[0].data()) as Float32Array, (await g[1].data()) as Float32Array];
  tf.dispose([x, w, proj, ...g]);
  return out;
}

describe('wasm conv gradient kernels', () => {
  it.each(randomCases(40, 2026).map((c, i) => [i, c] as const))('case %i %o matches cpu', async (i, c) => {
    const ref = await onBackend('cpu', () => convGrads(c, 100 + i));
    const got = await convGrads(c, 100 + i);
    expect(relMaxDiff(ref[0], got[0]), 'dX').toBeLessThan(TOL);
    expect(relMaxDiff(ref[1], got[1]), 'dW').toBeLessThan(TOL);
  });

  it('covers the reference layer shapes (3x3 stride 2 same, even sizes; 1x1 head)', async () => {
    for (const c of [
      { x: [2, 16, 16, 4], f: [3, 3, 4, 8], s: 2, pad: 'same' as const },
      { x: [2, 16, 16, 12], f: [3, 3, 12, 4], s: 1, pad: 'same' as const },
      { x: [2, 16, 16, 4], f: [1, 1, 4, 3], s: 1, pad: 'same' as const },
    ]) {
      const ref = await onBackend('cpu', () => convGrads(c, 7));
      const got = await convGrads(c, 7);
      expect(relMaxDiff(ref[0], got[0])).toBeLessThan(TOL);
      expect(relMaxDiff(ref[1], got[1])).toBeLessThan(TOL);
    }
  });

  it('whole U-Net-lite gradient through mse+ssim+edge equals the cpu backend', async () => {
    const grads = async () => {
      const model = buildUNetLite({ imageSize: 16, widths: [4, 8], seed: 5 });
      const loss = await createLoss(
        { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0, perceptual_model: null, perceptual_backbone: 'none' },
        16,
      );
      const x = tf.randomUniform([2, 16, 16, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
      const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const { value, grads: g } = tf.variableGrads(
        () => loss.compute(x, model.apply(x) as tf.Tensor4D).total,
        vars,
      );
      const out = await Promise.all(Object.values(g).map((t) => t.data() as Promise<Float32Array>));
      const v = (await value.data())[0];
      tf.dispose([x, value, ...Object.values(g)]);
      model.dispose();
      return { v, out };
    };
    const ref = await onBackend('cpu', grads);
    const got = await grads();
    expect(Math.abs(ref.v - got.v)).toBeLessThan(1e-5);
    for (let i = 0; i < ref.out.length; i++) expect(relMaxDiff(ref.out[i], got.out[i])).toBeLessThan(1e-4);
  });
});

describe('other gradients', () => {
  it('resize grad (2x nearest upsampling) equals the definition', async () => {
    const x = tf.zeros([2, 5, 4, 3]);
    const dy = tf.randomNormal([2, 10, 8, 3], 0, 1, 'float32', 2);
    const got = (
      tf
        .engine()
        .runKernel(
          'ResizeNearestNeighborGrad',
          { images: x, dy },
          { alignCorners: false, halfPixelCenters: false },
        ) as tf.Tensor
    ).dataSync();
    const ref = referenceResizeGrad(dy.dataSync() as Float32Array, 2, 5, 4, 10, 8, 3);
    expect(relMaxDiff(ref, got)).toBeLessThan(1e-6);
  });
});

describe('no leaks', () => {
  it('engine tensors and wasm buffers are stable across many training steps', async () => {
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const dir = await mkdtemp(join(tmpdir(), 'leak-'));
    const run = async (epochs: number) => {
      const r = await train({
        config: tinyConfig({ epochs, checkpoint: { every_epochs: 100, keep_last: 1 } }),
        train: tinySplit(8),
        val: tinySplit(4, 32, 3, 'val'),
        checkpointDir: join(dir, String(epochs)),
      });
      r.model.dispose();
    };
    await run(1); // warm-up: lazily created constants
    const t0 = tf.memory().numTensors;
    const d0 = backend.numDataIds();
    await run(5); // 10 steps + 5 validation passes
    expect(tf.memory().numTensors).toBe(t0);
    expect(backend.numDataIds()).toBe(d0);
  });
});

describe('training forward pass', () => {
  it('unetTrainForward equals model.apply, value and gradients (wasm and cpu)', async () => {
    const { unetTrainForward } = await import('../lib/models/autoencoder/train-forward');
    const model = buildUNetLite({ imageSize: 16, widths: [4, 8], seed: 5 });
    // Non-zero biases, so that fused and unfused bias handling are both exercised.
    for (const w of model.trainableWeights)
      if (w.shape.length === 1) w.write(tf.randomNormal(w.shape as number[], 0, 0.1, 'float32', 3));
    const x = tf.randomUniform([2, 16, 16, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const lossOf = (f: () => tf.Tensor) => () => tf.losses.meanSquaredError(x, f()) as tf.Scalar;
    for (const backend of ['wasm', 'cpu']) {
      await onBackend(backend, async () => {
        const a = tf.variableGrads(
          lossOf(() => model.apply(x) as tf.Tensor),
          vars,
        );
        const b = tf.variableGrads(
          lossOf(() => unetTrainForward(model, x, 2)),
          vars,
        );
        expect(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0])).toBeLessThan(1e-6);
        for (const k of Object.keys(a.grads))
          expect(relMaxDiff(a.grads[k].dataSync(), b.grads[k].dataSync())).toBeLessThan(1e-4);
      });
    }
    model.dispose();
  });
});
