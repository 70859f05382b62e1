import '@tensorflow/tfjs-backend-wasm';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultTrainingConfig } from '../lib/config/schema';
import { synthesizeDataset } from '../lib/data/synth';
import { saveModel } from '../lib/model/io';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { exportModelPackage } from '../lib/package/package';
import type { CategoryReport } from '../lib/report/category-report';
import { evaluateOffline, resolvePackageDir } from '../lib/report/evaluate-offline';

let root: string;

beforeAll(async () => {
  await tf.setBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'eval-offline-'));
  await synthesizeDataset(join(root, 'data'), {
    size: 48,
    trainGood: 8,
    testGood: 3,
    perDefect: 2,
    categories: ['weave'],
  });
  const model = buildUNetLite({ imageSize: 32, widths: [4, 8], seed: 5 });
  await saveModel(model, join(root, 'model'));
  model.dispose();
  // Laid out like a pipeline run: <run>/<category>/checkpoint/package.
  await exportModelPackage({
    modelDir: join(root, 'model'),
    packageDir: join(root, 'run', 'weave', 'checkpoint', 'package'),
    category: 'weave',
    pipeline: 'demo',
    runId: 'r1',
    config: { ...defaultTrainingConfig(), image_size: 32, model: { widths: [4, 8] } },
    training: { backend: 'wasm', peakRssMiB: 900 },
  });
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('npm run evaluate (offline evaluation)', () => {
  it('finds the package in a run folder, or refuses naming what it looked for', async () => {
    expect(await resolvePackageDir(join(root, 'run'), 'weave')).toBe(
      join(root, 'run', 'weave', 'checkpoint', 'package'),
    );
    await expect(resolvePackageDir(join(root, 'run'), 'marble')).rejects.toThrow(
      /no .*package for category 'marble'/,
    );
  });

  it('writes the same report as the pipeline from a dataset and a package', async () => {
    const res = await evaluateOffline({
      model: join(root, 'run'),
      dataRoot: join(root, 'data'),
      category: 'weave',
      outDir: join(root, 'out'),
    });
    expect(res.outputs.map((o) => o.name)).toEqual([
      'report_md',
      'report_html',
      'report_json',
      'predictions_csv',
    ]);
    const r = JSON.parse(await readFile(join(root, 'out', res.outputs[2].path), 'utf8')) as CategoryReport;
    expect(r.category).toBe('weave');
    expect(r.training.peakRssMb).toBe(900);
    expect(r.testImages).toBeGreaterThan(3);
    expect(r.pixel.regions).toBeGreaterThan(0);
  });
});
