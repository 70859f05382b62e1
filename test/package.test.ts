import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnomalyMapConfig } from '../lib/config/schema';
import { saveModel } from '../lib/model/io';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { configHash, loadModelPackage, PACKAGE_FORMAT_VERSION, sealPackage } from '../lib/package/package';
import type { StepContext } from '../lib/steps/contracts';
import { localHooks } from '../lib/steps/contracts';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { sha256File } from '../lib/util/atomic';
import { UserError } from '../lib/util/errors';
import { makeTinyPackage, tinyCalibration, tinyConfig, useWasm } from './support/tiny-package';

let root: string;
beforeAll(async () => {
  await useWasm();
  root = await mkdtemp(join(tmpdir(), 'pkg-test-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function expectInvalid(dir: string, pattern: RegExp, opts?: { requireCalibration?: boolean }) {
  const err = await loadModelPackage(dir, opts).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  expect((err as UserError).code).toBe('INVALID_MODEL');
  expect((err as UserError).message).toMatch(pattern);
}

describe('model package', () => {
  it('round-trips: export, calibrate, load gives the same predictions and metadata', async () => {
    const dir = join(root, 'roundtrip');
    await makeTinyPackage(dir, { category: 'bottle', runId: 'r42' });
    const pkg = await loadModelPackage(dir);
    expect(pkg.metadata).toMatchObject({
      category: 'bottle',
      runId: 'r42',
      pipeline: 'test',
      backend: 'wasm',
    });
    expect(pkg.metadata.configHash).toBe(configHash(tinyConfig()));
    expect(pkg.metadata.architecture).toMatchObject({ name: 'unet-lite', widths: [4, 8], imageSize: 32 });
    expect(pkg.preprocess.imageSize).toBe(32);
    expect(pkg.calibration).toEqual(tinyCalibration());
    expect(pkg.manifest.formatVersion).toBe(PACKAGE_FORMAT_VERSION);
    expect(Object.keys(pkg.manifest.files).sort()).toEqual([
      'calibration.json',
      'metadata.json',
      'model.json',
      'preprocess.json',
      'weights.bin',
    ]);
    // Same weights as the model that was exported.
    const original = buildUNetLite({ imageSize: 32, widths: [4, 8], seed: 7 });
    const x = tf.randomUniform([1, 32, 32, 3], 0, 1, 'float32', 3);
    const a = (original.predict(x) as tf.Tensor).dataSync();
    const b = ((pkg.model as tf.LayersModel).predict(x) as tf.Tensor).dataSync();
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeLessThan(1e-6);
    original.dispose();
    pkg.model.dispose();
  });

  it('sealPackage seals a calibrated copy with metrics and leaves the source package unchanged', async () => {
    const src = join(root, 'uncalibrated');
    await makeTinyPackage(src, { calibration: null });
    const before = await readFile(join(src, 'manifest.json'), 'utf8');
    const dir = join(root, 'sealed');
    await sealPackage({
      fromDir: src,
      packageDir: dir,
      calibration: tinyCalibration(),
      metrics: { auroc: 0.9 },
    });
    const pkg = await loadModelPackage(dir);
    expect(pkg.metrics).toEqual({ auroc: 0.9 });
    expect(pkg.manifest.files['metrics.json'].sha256).toBe(await sha256File(join(dir, 'metrics.json')));
    expect(pkg.manifest.files['calibration.json']).toBeDefined();
    pkg.model.dispose();
    expect(await readFile(join(src, 'manifest.json'), 'utf8')).toBe(before);
    await expect(loadModelPackage(src)).rejects.toThrow(/calibration/);
    // A calibration fitted at another size is refused, naming both sizes.
    await expect(
      sealPackage({ fromDir: src, packageDir: join(root, 'bad'), calibration: tinyCalibration(64) }),
    ).rejects.toThrow(/64 px.*32 px/);
  });

  it('refuses a tampered file, naming it and the checksum mismatch', async () => {
    const dir = join(root, 'tampered');
    await makeTinyPackage(dir);
    const w = await readFile(join(dir, 'weights.bin'));
    w[10] ^= 0xff;
    await writeFile(join(dir, 'weights.bin'), w);
    await expectInvalid(dir, /weights\.bin: checksum mismatch/);
  });

  it('refuses a missing file, a missing manifest, an unknown format version', async () => {
    const dir = join(root, 'missing');
    await makeTinyPackage(dir);
    await rm(join(dir, 'preprocess.json'));
    await expectInvalid(dir, /preprocess\.json: missing \(listed in manifest\.json\)/);

    const dir2 = join(root, 'nomanifest');
    await makeTinyPackage(dir2);
    await rm(join(dir2, 'manifest.json'));
    await expectInvalid(dir2, /manifest\.json: missing: this folder is not a model package/);

    const dir3 = join(root, 'version');
    await makeTinyPackage(dir3);
    const m = JSON.parse(await readFile(join(dir3, 'manifest.json'), 'utf8'));
    await writeFile(join(dir3, 'manifest.json'), JSON.stringify({ ...m, formatVersion: 99 }));
    await expectInvalid(dir3, /format version 99 is not supported/);
  });

  it('requires calibration for serving, unless told otherwise', async () => {
    const dir = join(root, 'uncalibrated');
    await makeTinyPackage(dir, { calibration: null });
    await expectInvalid(dir, /calibration\.json: missing: .*serve the package step's copy/);
    const pkg = await loadModelPackage(dir, { requireCalibration: false });
    expect(pkg.calibration).toBeNull();
    pkg.model.dispose();
  });

  it('scores packages calibrated before anomaly_map.score_border existed on whole maps, as calibrated', async () => {
    const { score_border: _, ...before } = tinyCalibration().anomalyMap;
    const dir = join(root, 'oldcal');
    await makeTinyPackage(dir, {
      calibration: { ...tinyCalibration(), anomalyMap: before as AnomalyMapConfig },
    });
    const old = await loadModelPackage(dir);
    expect(old.calibration?.anomalyMap.score_border).toBe(0);
    old.model.dispose();
    const now = join(root, 'newcal');
    await makeTinyPackage(now, { calibration: tinyCalibration() });
    const current = await loadModelPackage(now);
    expect(current.calibration?.anomalyMap.score_border).toBe(0.05);
    current.model.dispose();
  });

  it('refuses a calibration for another image size', async () => {
    const dir = join(root, 'badcal');
    await expect(makeTinyPackage(dir, { calibration: tinyCalibration(64) })).rejects.toThrow(
      /calibrated at 64 px but the model's preprocess\.json says 32 px/,
    );
  });
});

describe('checkpoint step', () => {
  it('exports the train step best model into <stepDir>/package with a package_manifest artifact', async () => {
    const runDir = join(root, 'runs', 'demo', 'run-7');
    const modelDir = join(runDir, 'bottle', 'train', 'best');
    const model = buildUNetLite({ imageSize: 32, widths: [4, 8], seed: 1 });
    await saveModel(model, modelDir);
    model.dispose();
    await writeFile(
      join(runDir, 'bottle', 'train', 'metadata.json'),
      JSON.stringify({ lossWeights: { mse: 1 } }),
    );
    const ctx: StepContext = {
      runDir,
      pipeline: 'demo',
      runId: 'run-7',
      category: 'bottle',
      dataRoot: root,
      step: 'checkpoint',
      stepDir: join(runDir, 'bottle', 'checkpoint'),
      config: tinyConfig(),
      params: {},
      inputs: {
        train: {
          step: 'train',
          activity: 'train',
          category: 'bottle',
          outputs: [
            { name: 'best_model', path: 'bottle/train/best/model.json', sha256: 'x', bytes: 1 },
            { name: 'metadata', path: 'bottle/train/metadata.json', sha256: 'x', bytes: 1 },
          ],
          summary: { epochs: 3, backend: 'wasm' },
          startedAt: '',
          finishedAt: '',
        },
      },
    };
    const res = await checkpointStep(ctx, localHooks());
    expect(res.activity).toBe('checkpoint');
    expect(res.outputs.map((o) => o.name)).toEqual(['package_manifest']);
    expect(res.outputs[0].path).toBe('bottle/checkpoint/package/manifest.json');
    const pkg = await loadModelPackage(join(ctx.stepDir, 'package'), { requireCalibration: false });
    expect(pkg.metadata).toMatchObject({
      category: 'bottle',
      runId: 'run-7',
      backend: 'wasm',
      training: { epochs: 3, lossWeights: { mse: 1 } },
    });
    pkg.model.dispose();
    // A retry re-exports over the old package.
    await checkpointStep(ctx, localHooks());
    await expect(
      loadModelPackage(join(ctx.stepDir, 'package'), { requireCalibration: false }),
    ).resolves.toBeDefined();
  });
});
