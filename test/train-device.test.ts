/**
 * The training engine on the execution provider of `training.device`: on a host without a GPU
 * provider, `auto` trains on CPU and records why (engine runtime -> metadata.json engineInfo); where
 * ONNX Runtime's WebGPU provider finds an adapter, one step on it equals the CPU step within float
 * tolerance (skipped, with the provider's error in the title, where it finds none: these hosts).
 */
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TrainingConfig } from '../lib/config/schema';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { probeProvider, resolveExecutionProvider } from '../lib/onnx/execution-provider';
import { createTrainEngine } from '../lib/train/engine';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer } from '../lib/train/tfjs-train-engine';
import { tinyConfig, tinySplit } from './support/train-fixtures';

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

const cfg = (over: Record<string, unknown> = {}): TrainingConfig =>
  tinyConfig({ loss: { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0 }, threads: 1, ...over });

const webgpu = await probeProvider(ort, 'webgpu', 0);

async function engineOn(c: TrainingConfig, provider: 'cpu' | 'webgpu') {
  const model = buildUNetLite({ imageSize: c.image_size, widths: c.model.widths, seed: 3 });
  const optimizer = createOptimizer(c);
  const loss = await createLoss(c.loss, c.image_size);
  const executionProvider = await resolveExecutionProvider(provider, { env: {} });
  return OnnxTrainEngine.create(model, optimizer, loss, c, { threads: 1, executionProvider });
}

describe('training on the configured device', () => {
  it('device: auto without a GPU provider trains on CPU and records the providers errors', async () => {
    const c = cfg();
    const model = buildUNetLite({ imageSize: c.image_size, widths: c.model.widths, seed: 3 });
    const { engine, reason } = await createTrainEngine({
      model,
      optimizer: createOptimizer(c),
      loss: await createLoss(c.loss, c.image_size),
      config: c,
      backend: 'wasm',
    });
    try {
      expect(engine.name).toBe('onnx');
      const rt = engine.runtime;
      expect(rt?.runtime).toMatch(/^onnxruntime-node \d/);
      expect(rt?.threads).toBe(1);
      if (rt?.executionProvider === 'cpu') {
        expect(rt.deviceRequested).toBe(process.env.ANOMALY_SPOTTER_DEVICE ?? 'auto');
        if (rt.deviceRequested === 'auto') {
          expect(rt.deviceFallback).toMatch(/^auto: cuda unavailable \(.+\); webgpu unavailable \(.+\)$/);
          expect(reason).toContain('training.device: auto -> cpu (auto: cuda unavailable');
        }
        expect(engine.description).toMatch(/cpu execution provider, 1 thread/);
      }
      const images = Float32Array.from(tinySplit(2, c.image_size, 1).images, (v) => v / 255);
      expect(Number.isFinite((await engine.step(images, 2, 1e-3)).loss)).toBe(true);
    } finally {
      await engine.release();
    }
  });

  it.skipIf(!webgpu.ok)(
    `the WebGPU provider takes the same step as CPU${webgpu.ok ? '' : ` (skipped: no WebGPU adapter here: ${webgpu.error})`}`,
    async () => {
      const c = cfg();
      const cpu = await engineOn(c, 'cpu');
      const gpu = await engineOn(c, 'webgpu');
      try {
        for (let s = 0; s < 2; s++) {
          const images = Float32Array.from(tinySplit(3, c.image_size, s + 1).images, (v) => v / 255);
          const a = await cpu.step(images, 3, 1e-3);
          const b = await gpu.step(images, 3, 1e-3);
          expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-3 * Math.max(1, Math.abs(a.loss)));
        }
        const val = Float32Array.from(tinySplit(3, c.image_size, 9).images, (v) => v / 255);
        expect(await gpu.evaluate(val, 3)).toBeCloseTo(await cpu.evaluate(val, 3), 3);
      } finally {
        await cpu.release();
        await gpu.release();
      }
    },
  );
});
