/**
 * The thread handover (lib/train/thread-budget, temporal/thread-budgets): the supervisor's share of
 * the cores per running training, the ONNX Runtime engine changing its thread count mid-training
 * without losing its place, and the trainer taking a new share between epochs (recorded in its result).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { TRAIN_THREADS_ENV } from '../lib/train/engine';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer } from '../lib/train/tfjs-train-engine';
import { setThreadBudget, threadsPerTraining } from '../lib/train/thread-budget';
import { train } from '../lib/train/trainer';
import { isThreadBudgetMessage, ThreadBudgets } from '../temporal/thread-budgets';
import { tinyConfig, tinySplit } from './support/train-fixtures';

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});
afterEach(() => setThreadBudget(null));

describe('thread budgets', () => {
  it('split the cores between the trainings running now, and tell only those whose share changed', () => {
    expect([1, 2, 3, 4].map((busy) => threadsPerTraining(8, busy))).toEqual([8, 4, 2, 2]);
    expect(threadsPerTraining(2, 5)).toBe(1);
    const b = new ThreadBudgets<string>(4);
    b.update('a', 't1', 'train', true);
    expect(b.changes()).toEqual([{ child: 'a', message: { kind: 'thread-budget', threads: 4 } }]);
    b.update('b', 't2', 'train', true);
    expect(b.changes()).toEqual([
      { child: 'a', message: { kind: 'thread-budget', threads: 2 } },
      { child: 'b', message: { kind: 'thread-budget', threads: 2 } },
    ]);
    b.update('b', 't3', 'validate', true); // not a training: no change
    expect(b.changes()).toEqual([]);
    b.update('b', 't2', null, false); // b's training ended: a gets the cores back
    expect(b.changes()).toEqual([{ child: 'a', message: { kind: 'thread-budget', threads: 4 } }]);
    b.update('b', 't4', 'train', true);
    b.remove('a'); // a's process died
    expect(b.changes()).toEqual([{ child: 'b', message: { kind: 'thread-budget', threads: 4 } }]);
    expect(isThreadBudgetMessage({ kind: 'thread-budget', threads: 2 })).toBe(true);
    expect(isThreadBudgetMessage({ kind: 'thread-budget', threads: 0 })).toBe(false);
  });

  it('the ONNX Runtime engine changes its threads between steps and trains on from where it was', async () => {
    const cfg = tinyConfig({ batch_size: 4 });
    const images = Float32Array.from(tinySplit(4).images, (v) => v / 255);
    const losses = async (switchAt: number | null): Promise<number[]> => {
      const model = buildUNetLite({ imageSize: 32, widths: cfg.model.widths, seed: 1 });
      const engine = await OnnxTrainEngine.create(
        model,
        createOptimizer(cfg),
        await createLoss(cfg.loss, 32),
        cfg,
        {
          threads: 1,
        },
      );
      const out: number[] = [];
      for (let k = 0; k < 4; k++) {
        if (k === switchAt) await engine.setThreads(2);
        out.push((await engine.step(images, 4, 1e-3)).loss);
      }
      expect(engine.threads).toBe(switchAt === null ? 1 : 2);
      expect(engine.description).toContain(`${engine.threads} thread(s)`);
      await engine.release();
      model.dispose();
      return out;
    };
    const plain = await losses(null);
    const switched = await losses(2);
    for (let k = 0; k < 4; k++) expect(switched[k]).toBeCloseTo(plain[k], 4);
  });

  it('the trainer takes a new share between epochs and records it; a fixed training.threads is kept', async () => {
    // Started as one of two training slots on a 2-core host (1 thread), then told the other ended.
    const prev = process.env[TRAIN_THREADS_ENV];
    process.env[TRAIN_THREADS_ENV] = '1';
    setThreadBudget(2);
    const r = await train({
      config: tinyConfig({ epochs: 2, engine: 'onnx', threads: null }),
      train: tinySplit(8),
      val: null,
      checkpointDir: await mkdtemp(join(tmpdir(), 'budget-')),
    }).finally(() => {
      if (prev === undefined) delete process.env[TRAIN_THREADS_ENV];
      else process.env[TRAIN_THREADS_ENV] = prev;
    });
    expect(r.engine.threads).toBe(1);
    expect(r.engine.threadChanges).toEqual([{ epoch: 1, threads: 2 }]);
    expect(r.engine.description).toContain('2 thread(s)');
    r.model.dispose();
    const fixed = await train({
      config: tinyConfig({ epochs: 1, engine: 'onnx', threads: 1 }),
      train: tinySplit(8),
      val: null,
      checkpointDir: await mkdtemp(join(tmpdir(), 'budget-fixed-')),
    });
    expect(fixed.engine.threadChanges).toEqual([]);
    expect(fixed.engine.threads).toBe(1);
    fixed.model.dispose();
  });
});
