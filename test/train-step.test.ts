/** The pipeline's train step end to end on a tiny tensor cache: outputs, metadata, resume hint. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../lib/model/io';
import { decodeEvent } from '../lib/monitor/event-proto';
import { readRecords } from '../lib/monitor/tfrecord';
import type { ProgressDetails } from '../lib/steps/contracts';
import { localHooks } from '../lib/steps/contracts';
import { trainStep } from '../lib/train/train-step';
import { preprocessedRun, tinyConfig } from './support/train-fixtures';

describe('train step', () => {
  it('trains, writes best model + history + metadata, reports checkpoints, resumes on retry', async () => {
    const run = await preprocessedRun(8, 4);
    const ctx = run.ctx(tinyConfig({ epochs: 2 }));
    const progress: ProgressDetails[] = [];
    const res = await trainStep(
      ctx,
      localHooks((p) => progress.push(p)),
    );
    expect(res.outputs.map((o) => o.name)).toEqual(['best_model', 'best_weights', 'history', 'metadata']);
    expect(res.summary).toMatchObject({ backend: 'wasm', epochsRun: 2, totalEpochs: 2 });
    const model = await loadModel(join(ctx.stepDir, 'best'));
    expect(model.outputs[0].shape).toEqual([null, 32, 32, 3]);
    model.dispose();
    const meta = JSON.parse(await readFile(join(ctx.stepDir, 'metadata.json'), 'utf8'));
    expect(meta.mixedPrecision).toEqual({ enabled: false, reason: expect.stringMatching(/wasm/) });
    expect(meta.perceptualLoss.enabled).toBe(false);
    expect(meta.perceptualLoss.statement).toMatch(/weight 0/);
    expect(meta.backendInfo).toMatchObject({ name: 'wasm', simd: true });
    expect(meta.peakRssMiB).toBeGreaterThan(0);
    // What ran the steps: engine, execution provider and threads (the tfjs backend above sat idle).
    expect(meta.engine).toBe('onnx');
    expect(meta.engineInfo).toMatchObject({
      runtime: expect.stringMatching(/^onnxruntime-node \d/),
      executionProvider: meta.executionProvider,
      threads: meta.threads,
    });
    expect(meta.threads).toBeGreaterThan(0);
    if (meta.executionProvider === 'cpu' && !process.env.ANOMALY_SPOTTER_DEVICE)
      expect(meta.deviceFallback).toMatch(/^auto: cuda unavailable \(.+\); webgpu unavailable \(.+\)$/);
    expect(meta.syntheticDefects).toEqual({
      generator: 'patches',
      probability: 0.5,
      max_count: 2,
      min_size: 0.05,
      max_size: 0.25,
    });
    const history = JSON.parse(await readFile(join(ctx.stepDir, 'history.json'), 'utf8'));
    expect(history).toHaveLength(2);
    const withCk = progress.filter((p) => p.checkpoint);
    expect(withCk.at(-1)?.checkpoint).toBe(join('widget', 'train', 'checkpoints', 'epoch-0002'));

    // A retry (worker crash after training) resumes from the heartbeat's checkpoint: no epoch reruns.
    const again = await trainStep(ctx, { ...localHooks(), previousProgress: withCk.at(-1), attempt: 2 });
    expect(again.summary).toMatchObject({
      epochsRun: 2,
      resumedFrom: join('widget', 'train', 'checkpoints', 'epoch-0002'),
    });
    // The retry's event file opens with TensorFlow's restart marker at the next epoch (3), so
    // TensorBoard shows its epochs in place of anything the crashed attempt logged after epoch 2.
    const tbDir = join(ctx.stepDir, 'tensorboard');
    const files = (await readdir(tbDir)).sort();
    expect(files).toHaveLength(2);
    const events = readRecords(await readFile(join(tbDir, files[1]))).map(decodeEvent);
    expect(events[1]).toMatchObject({ step: 3, session_log: { status: 1 } });
    const firstAttempt = readRecords(await readFile(join(tbDir, files[0]))).map(decodeEvent);
    expect(firstAttempt.some((e) => e.session_log)).toBe(false);
    // Reconstruction images: clean | reconstruction | with synthetic defects | their reconstruction.
    const images = firstAttempt.flatMap((e) =>
      ((e.summary as { value?: { tag: string; image?: { height: number; width: number } }[] })?.value ?? [])
        .filter((v) => v.image)
        .map((v) => ({ tag: v.tag, ...v.image })),
    );
    expect(images.length).toBeGreaterThan(0);
    expect(images[0]).toMatchObject({ tag: 'reconstruction', height: 4 * 32 });
  });
});
