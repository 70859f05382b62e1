/**
 * The backbone perceptual loss (lib/models/autoencoder/perceptual-graph, loss.perceptual_backbone):
 * zero with zero gradient for a perfect reconstruction, a gradient that matches finite differences,
 * the ONNX Runtime engine training with it (the term logged, the total the weighted sum), and the
 * tfjs engine turning it off with a statement. Needs the pretrained backbone (requirements-backbone.txt,
 * installed by scripts/install-test-deps.sh): the test is skipped, saying so, without it.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BackboneWeights, loadBackbone } from '../lib/backbone';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import {
  buildPerceptualGraph,
  PERCEPTUAL_GRAD,
  PERCEPTUAL_VALUE,
} from '../lib/models/autoencoder/perceptual-graph';
import { train } from '../lib/train/trainer';
import { Rng } from '../lib/util/rng';
import { tinyConfig, tinySplit } from './support/train-fixtures';

let weights: BackboneWeights | null = null;
let missing = '';
beforeAll(async () => {
  await selectBackend('wasm', 'train');
  try {
    weights = await loadBackbone({ variant: 'lite0', log: () => {} });
  } catch (err) {
    missing = (err as Error).message;
  }
});

const S = 24;
const image = (rng: Rng, n: number) =>
  Float32Array.from({ length: n * S * S * 3 }, () => 0.2 + 0.6 * rng.next());

describe('backbone perceptual loss', () => {
  it('is zero for a perfect reconstruction and its gradient matches finite differences', async (ctx) => {
    if (!weights) return ctx.skip(`backbone not installed: ${missing}`);
    const s = await ort.InferenceSession.create(buildPerceptualGraph(S, weights), { intraOpNumThreads: 1 });
    const rng = new Rng(5);
    const t = image(rng, 2);
    const run = async (p: Float32Array) =>
      s.run({
        target: new ort.Tensor('float32', t, [2, S, S, 3]),
        reconstruction: new ort.Tensor('float32', p, [2, S, S, 3]),
      });
    const same = await run(t);
    expect((same[PERCEPTUAL_VALUE].data as Float32Array)[0]).toBe(0);
    expect(Math.max(...(same[PERCEPTUAL_GRAD].data as Float32Array).map(Math.abs))).toBe(0);

    // A blurred-ish reconstruction: the target plus smooth noise.
    const p = t.map((v, i) => v + 0.05 * Math.sin(i / 7));
    const r = await run(p);
    const g = r[PERCEPTUAL_GRAD].data as Float32Array;
    const value = (r[PERCEPTUAL_VALUE].data as Float32Array)[0];
    expect(value).toBeGreaterThan(0);
    // Directional derivatives over several random directions, against central differences (float32
    // and ReLU6 kinks make single directions noisy; the aggregate is tight).
    let se = 0;
    let sn = 0;
    for (let k = 0; k < 6; k++) {
      const v = Float32Array.from({ length: p.length }, () => rng.next() - 0.5);
      const eps = 1e-3;
      const f = async (sign: number) =>
        ((await run(p.map((x, i) => x + sign * eps * v[i])))[PERCEPTUAL_VALUE].data as Float32Array)[0];
      const numeric = ((await f(1)) - (await f(-1))) / (2 * eps);
      let analytic = 0;
      for (let i = 0; i < p.length; i++) analytic += g[i] * v[i];
      se += (analytic - numeric) ** 2;
      sn += numeric ** 2;
    }
    expect(Math.sqrt(se / sn)).toBeLessThan(0.1);
  });

  it('trains on the ONNX Runtime engine with the term in the loss, and the tfjs engine turns it off', async (ctx) => {
    if (!weights) return ctx.skip(`backbone not installed: ${missing}`);
    const loss = {
      mse: 1,
      ssim: 0,
      edge: 0,
      perceptual: 0.5,
      perceptual_model: null,
      perceptual_backbone: 'efficientnet-lite0',
    };
    const onnx = await train({
      config: tinyConfig({ epochs: 2, engine: 'onnx', loss }),
      train: tinySplit(8),
      val: tinySplit(4, 32, 3, 'val'),
      checkpointDir: await mkdtemp(join(tmpdir(), 'perceptual-')),
    });
    expect(onnx.engine.name).toBe('onnx');
    expect(onnx.perceptual.enabled).toBe(true);
    expect(onnx.perceptual.statement).toMatch(/EfficientNet-Lite0 features at strides 2, 4, on ONNX Runtime/);
    for (const h of onnx.history) {
      expect(h.terms.perceptual).toBeGreaterThan(0);
      expect(h.loss).toBeCloseTo(h.terms.mse + 0.5 * h.terms.perceptual, 4);
    }
    onnx.model.dispose();

    const tfjs = await train({
      config: tinyConfig({ epochs: 1, engine: 'tfjs', loss }),
      train: tinySplit(8),
      val: null,
      checkpointDir: await mkdtemp(join(tmpdir(), 'perceptual-tfjs-')),
    });
    expect(tfjs.perceptual.enabled).toBe(false);
    expect(tfjs.perceptual.statement).toMatch(/runs on the ONNX Runtime training engine only/);
    expect(tfjs.history[0].terms.perceptual).toBeUndefined();
    tfjs.model.dispose();
  });

  it('a missing backbone turns the term off under auto, with the reason', async () => {
    const prev = process.env.ANOMALY_SPOTTER_STATE_DIR;
    // An empty state folder and no Python package: nothing to load or convert.
    process.env.ANOMALY_SPOTTER_STATE_DIR = await mkdtemp(join(tmpdir(), 'no-backbone-'));
    const prevPath = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const l = await createLoss(
        { mse: 1, ssim: 0, edge: 0, perceptual: 0.1, perceptual_model: null, perceptual_backbone: 'auto' },
        S,
      );
      expect(l.perceptual.enabled).toBe(false);
      expect(l.weights.perceptual).toBe(0);
      expect(l.perceptual.statement).toMatch(
        /^disabled: loss.perceptual_backbone auto, but the backbone is not available/,
      );
    } finally {
      process.env.PATH = prevPath;
      if (prev === undefined) delete process.env.ANOMALY_SPOTTER_STATE_DIR;
      else process.env.ANOMALY_SPOTTER_STATE_DIR = prev;
    }
  });
});
