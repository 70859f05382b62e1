import '@tensorflow/tfjs-backend-wasm';
import { rm } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AnomalyMapConfig, anomalyMapSchema } from '../lib/config/schema';
import { anomalyMapTensor, imageScoreTensor, scoreImages } from '../lib/eval/anomaly-map';
import { inferenceEngineLabel, readScoresFile } from '../lib/eval/scores-file';
import { createScoringEngine } from '../lib/eval/scoring-engine';
import { validateStep } from '../lib/eval/validate-step';
import { appendAnomalyMap, symmetricPadIndices } from '../lib/models/autoencoder/anomaly-map-graph';
import { createOnnxScorer } from '../lib/models/autoencoder/runner';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { GraphBuilder } from '../lib/onnx/graph';
import { encodeModel, valueInfo } from '../lib/onnx/proto';
import { localHooks } from '../lib/steps/contracts';
import { inputPath } from '../lib/steps/result';
import { type EvalRun, makeEvalRun } from './support/eval-run';
import { rand, randomizeBiases } from './support/random-model';

/**
 * Tolerances of ONNX vs tfjs maps and scores: absolute, per unit of mse_weight + ssim_weight (map values
 * are of order 0.1-1 per unit). Both engines compute the same float32 formula in a different summation
 * order (~1e-7 relative; ONNX Runtime's grouped convolutions, XNNPACK's in tfjs-wasm), and their
 * reconstructions differ by ~1e-6. Where an image is locally flat, SSIM's variance terms
 * (E[x^2] - mu^2, against C2 = 9e-4) amplify that: measured up to 1.3e-4 per unit of ssim_weight on
 * the flat patch below with little smoothing, where even the tfjs map of the ONNX reconstruction differs
 * from the all-tfjs map by 0.7e-4; on the noise images everything agrees within 3e-6.
 */
const TOL_NOISE = 1e-5;
const TOL_ANY = 3e-4;
const perUnit = (c: AnomalyMapConfig, t: number) => t * (c.mse_weight + c.ssim_weight);

beforeAll(async () => {
  await tf.setBackend('wasm');
});

/** Random biases too, so that reconstructions differ from the input. */
function randomModel(size: number, seed: number): tf.LayersModel {
  const model = buildUNetLite({ imageSize: size, widths: [4, 8], seed });
  randomizeBiases(model, seed * 100, 0.3);
  return model;
}

/** Noise at even indices; at odd ones smooth images with a flat patch (SSIM's ill-conditioned case). */
function images(n: number, size: number, seed: number): Float32Array {
  const out = rand(n * size * size * 3, seed);
  for (let i = 1; i < n; i += 2)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++) {
          const flat = x > size / 2 && y > size / 2;
          out[((i * size + y) * size + x) * 3 + c] = flat ? 0.5 : 0.5 + 0.4 * Math.sin((x + 2 * y + c) / 4);
        }
  return out;
}

/** Max |a - b| over the noise images (even indices) of n images of `px` values each. */
function maxAbsDiffNoise(a: Float32Array, b: Float32Array, n: number, px: number): number {
  let d = 0;
  for (let i = 0; i < n; i += 2)
    d = Math.max(d, maxAbsDiff(a.subarray(i * px, (i + 1) * px), b.subarray(i * px, (i + 1) * px)));
  return d;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

const cfg = (over: Partial<AnomalyMapConfig>): AnomalyMapConfig => anomalyMapSchema.parse(over);

/**
 * Every option of the anomaly_map schema: weights incl. 0, sigma off / small / capped at the size,
 * max / top-k, score border none / default / widest.
 */
const CONFIGS: [string, AnomalyMapConfig][] = [
  ['defaults (mse 1 + ssim 1, sigma 2, max, score border 0.05)', cfg({})],
  [
    'mse only, no smoothing, no score border, top-50 mean',
    cfg({ ssim_weight: 0, smoothing_sigma: 0, score: 'topk_mean', score_border: 0 }),
  ],
  ['score border 0.25, top-10 mean', cfg({ score_border: 0.25, score: 'topk_mean', topk: 10 })],
  // Differs from the defaults in the score border only: one scorer must not reuse their session.
  ['score border 0.25, otherwise the defaults', cfg({ score_border: 0.25 })],
  [
    'ssim only, sigma 4, top-10 mean',
    cfg({ mse_weight: 0, smoothing_sigma: 4, score: 'topk_mean', topk: 10 }),
  ],
  [
    'weights 0.5 / 2, sigma 0.3 (radius 2), max',
    cfg({ mse_weight: 0.5, ssim_weight: 2, smoothing_sigma: 0.3 }),
  ],
  ['sigma 9: radius capped at the image size', cfg({ smoothing_sigma: 9, score: 'topk_mean', topk: 7 })],
  ['top-k larger than the map: mean of all pixels', cfg({ score: 'topk_mean', topk: 100000 })],
];

describe('anomaly map and score on ONNX Runtime', () => {
  it('symmetric padding indices repeat the edge pixel (scipy reflect), up to the full size', () => {
    expect(symmetricPadIndices(4, 2)).toEqual([1, 0, 0, 1, 2, 3, 3, 2]);
    expect(symmetricPadIndices(3, 3)).toEqual([2, 1, 0, 0, 1, 2, 2, 1, 0]);
    expect(() => symmetricPadIndices(3, 4)).toThrow(/at least 4/);
  });

  /**
   * The map graph alone, on given reconstructions, against tfjs' reference 'cpu' backend and wasm (what
   * the pipeline uses). The three sum the blurs in different orders; in the flat patch SSIM turns that
   * into up to 1.4e-5 per unit of ssim_weight (measured), and each differs about as much from a float64
   * SSIM (ONNX Runtime 1.0e-5, tfjs 1.3-1.4e-5).
   */
  for (const [backend, tolerance] of [
    ['cpu', 3e-5],
    ['wasm', 3e-5],
  ] as const) {
    it(`the map graph alone equals anomalyMapTensor + imageScoreTensor on tfjs ${backend} within ${tolerance} per unit weight`, async () => {
      const ort = await import('onnxruntime-node');
      await tf.setBackend(backend);
      try {
        const size = 32;
        const n = 3;
        const x = images(n, size, 3);
        // Reconstructions near the input (as a trained model's), clipped to [0,1].
        const noise = rand(x.length, 4, -0.1, 0.1);
        const recon = x.map((v, i) => Math.min(1, Math.max(0, v + noise[i])));
        for (const [name, c] of CONFIGS) {
          const g = new GraphBuilder();
          const nchw = (t: string) => g.transpose(t, [0, 3, 1, 2]);
          appendAnomalyMap(g, nchw('x'), nchw('recon'), { c: 3, h: size, w: size }, c, {
            map: 'map',
            score: 'score',
          });
          const bytes = encodeModel({
            name: 'map',
            nodes: g.nodes,
            initializers: g.initializers,
            inputs: [valueInfo('x', ['N', size, size, 3]), valueInfo('recon', ['N', size, size, 3])],
            outputs: [valueInfo('map', ['N', size, size]), valueInfo('score', ['N'])],
          });
          const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
          const dims = [n, size, size, 3];
          const out = await session.run({
            x: new ort.Tensor('float32', x, dims),
            recon: new ort.Tensor('float32', recon, dims),
          });
          await session.release();
          const [mapT, scoreT] = tf.tidy(() => {
            const m = anomalyMapTensor(
              tf.tensor4d(x, [n, size, size, 3]),
              tf.tensor4d(recon, [n, size, size, 3]),
              c,
            );
            return [m, imageScoreTensor(m, c)];
          });
          const maps = mapT.dataSync() as Float32Array;
          const scores = scoreT.dataSync() as Float32Array;
          tf.dispose([mapT, scoreT]);
          const tol = perUnit(c, tolerance);
          expect(maxAbsDiff(out.map.data as Float32Array, maps), name).toBeLessThan(tol);
          expect(maxAbsDiff(out.score.data as Float32Array, scores), name).toBeLessThan(tol);
        }
      } finally {
        await tf.setBackend('wasm');
      }
    });
  }

  for (const size of [32, 48]) {
    it(`${size} px: maps and scores equal tfjs scoreImages within ${TOL_NOISE} (noise) / ${TOL_ANY} (flat patch) per unit weight, every config`, async () => {
      const model = randomModel(size, size);
      const n = 5;
      const x = images(n, size, size + 1);
      const onnx = await createOnnxScorer(model, { threads: 1 });
      try {
        for (const [name, c] of CONFIGS) {
          const before = tf.memory().numTensors;
          // Batch 2: the ONNX batches start at non-zero offsets and the last one is short.
          const a = await scoreImages(model, x, n, size, c, 2);
          const b = await scoreImages(model, x, n, size, c, 2, { scoreBatch: onnx.score });
          expect(tf.memory().numTensors, name).toBe(before);
          expect(maxAbsDiffNoise(a.maps, b.maps, n, size * size), name).toBeLessThan(perUnit(c, TOL_NOISE));
          expect(maxAbsDiffNoise(a.scores, b.scores, n, 1), name).toBeLessThan(perUnit(c, TOL_NOISE));
          expect(maxAbsDiff(a.maps, b.maps), name).toBeLessThan(perUnit(c, TOL_ANY));
          expect(maxAbsDiff(a.scores, b.scores), name).toBeLessThan(perUnit(c, TOL_ANY));
          expect(b.latencyMs).toHaveLength(n);
          // Not vacuous: maps vary over the image and scores between images.
          expect(Math.max(...a.maps) - Math.min(...a.maps), name).toBeGreaterThan(1e-3);
        }
      } finally {
        await onnx.release();
        model.dispose();
      }
    });
  }

  it('rejects a config with both weights 0, and images of the wrong size', async () => {
    const model = randomModel(32, 1);
    const onnx = await createOnnxScorer(model, { threads: 1 });
    try {
      await expect(onnx.prepare(cfg({ mse_weight: 0, ssim_weight: 0 }))).rejects.toThrow(/both 0/);
      await expect(onnx.score(new Float32Array(48 * 48 * 3), 1, 48, cfg({}))).rejects.toThrow(/48x48/);
    } finally {
      await onnx.release();
      model.dispose();
    }
  });

  it("createScoringEngine('auto') resolves to onnx; 'tfjs' scores on tfjs; both agree", async () => {
    const model = randomModel(32, 2);
    const c = cfg({ score: 'topk_mean', topk: 20 });
    const x = images(3, 32, 9);
    const onnx = await createScoringEngine('auto', [{ model, anomalyMap: c }], { threads: 1 });
    const tfjs = await createScoringEngine('tfjs', [{ model, anomalyMap: c }]);
    try {
      expect(onnx.engine).toBe('onnx');
      expect(onnx.threads).toBe(1);
      expect(tfjs.engine).toBe('tfjs');
      const a = await tfjs.score(model, x, 3, 32, c);
      const b = await onnx.score(model, x, 3, 32, c);
      expect(maxAbsDiff(a.scores, b.scores)).toBeLessThan(perUnit(c, TOL_ANY));
      const other = randomModel(32, 3);
      expect(() => onnx.score(other, x, 3, 32, c)).toThrow(/no session/);
      other.dispose();
    } finally {
      await onnx.release();
      await tfjs.release();
      model.dispose();
    }
  });
});

describe('validate step engines', () => {
  let run: EvalRun;
  beforeAll(async () => {
    run = await makeEvalRun();
  });
  afterAll(async () => {
    if (run?.runDir) await rm(run.runDir, { recursive: true, force: true });
  });

  it('scores on ONNX Runtime by default, records the engine, and matches params.engine tfjs', async () => {
    const scoresOf = async (params: Record<string, string>) => {
      run.results.validate = await validateStep(
        run.ctx('validate', { batch_size: 3, ...params }),
        localHooks(),
      );
      return readScoresFile(inputPath(run.ctx('threshold'), 'validate', 'scores'));
    };
    const onnx = await scoresOf({});
    expect(onnx.latency.engine).toBe('onnx');
    expect(onnx.latency.backend).toBe('wasm');
    expect(inferenceEngineLabel(onnx.latency)).toMatch(/^onnx \(ONNX Runtime CPU, \d+ threads\)$/);
    expect(run.results.validate?.summary).toMatchObject({ engine: 'onnx' });
    const tfjs = await scoresOf({ engine: 'tfjs' });
    expect(tfjs.latency.engine).toBe('tfjs');
    expect(inferenceEngineLabel(tfjs.latency)).toBe('tfjs wasm');
    for (const split of ['val', 'test'] as const)
      onnx[split].forEach((r, i) => {
        expect(Math.abs(r.score - tfjs[split][i].score)).toBeLessThan(
          perUnit(run.config.anomaly_map, TOL_ANY),
        );
      });
    await expect(validateStep(run.ctx('validate', { engine: 'gpu' }), localHooks())).rejects.toThrow(
      /params.engine must be one of auto, tfjs, onnx, got "gpu"/,
    );
  });
});
