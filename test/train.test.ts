/** Trainer units: schedules, early stopping, checkpoints, reproducibility, cancellation + resume. */
import { mkdtemp, readFile, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import {
  findLatestValidCheckpoint,
  listEpochCheckpoints,
  loadCheckpoint,
  saveCheckpoint,
  verifyCheckpoint,
} from '../lib/train/checkpoints';
import { EarlyStopping } from '../lib/train/early-stopping';
import { LrSchedule } from '../lib/train/schedule';
import { createOptimizer } from '../lib/train/tfjs-train-engine';
import { TrainingCancelled, train } from '../lib/train/trainer';
import { childConfig, lossesOf, tinyConfig, tinySplit } from './support/train-fixtures';

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

const tmp = (p: string) => mkdtemp(join(tmpdir(), p));
const data = () => ({ train: tinySplit(16), val: tinySplit(4, 32, 3, 'val') });

describe('LR schedules and early stopping', () => {
  const cfg = tinyConfig().lr_schedule;
  it('constant, cosine, step, plateau', () => {
    expect(new LrSchedule({ ...cfg, name: 'constant' }, 0.1, 10).lrForEpoch(7)).toBe(0.1);
    const cos = new LrSchedule({ ...cfg, name: 'cosine', min_lr: 0 }, 0.1, 10);
    expect(cos.lrForEpoch(0)).toBeCloseTo(0.1);
    expect(cos.lrForEpoch(5)).toBeCloseTo(0.05);
    expect(cos.lrForEpoch(9)).toBeGreaterThan(0);
    const st = new LrSchedule({ ...cfg, name: 'step', step_epochs: 3, gamma: 0.5, min_lr: 0 }, 0.1, 10);
    expect([0, 2, 3, 6].map((e) => st.lrForEpoch(e))).toEqual([0.1, 0.1, 0.05, 0.025]);
    const pl = new LrSchedule({ ...cfg, name: 'plateau', plateau_patience: 2, gamma: 0.1, min_lr: 0 }, 1, 10);
    for (const v of [1, 0.9, 0.95, 0.95]) pl.observe(v);
    expect(pl.lrForEpoch(4)).toBeCloseTo(0.1);
    const copy = new LrSchedule(
      { ...cfg, name: 'plateau', plateau_patience: 2, gamma: 0.1, min_lr: 0 },
      1,
      10,
    );
    copy.state = pl.state;
    expect(copy.lrForEpoch(5)).toBeCloseTo(0.1);
  });

  it('early stopping with patience and min_delta', () => {
    const es = new EarlyStopping(2, 0.01);
    expect(es.update(1, 1)).toBe(true);
    expect(es.update(0.995, 2)).toBe(false); // within min_delta
    expect(es.stopped).toBe(false);
    expect(es.update(0.98, 3)).toBe(true);
    es.update(0.99, 4);
    es.update(0.99, 5);
    expect(es.stopped).toBe(true);
    expect(es.state.bestEpoch).toBe(3);
  });

  it('a run stops early and records it', async () => {
    const r = await train({
      config: tinyConfig({
        epochs: 6,
        optimizer: { name: 'adam', lr: 1e-9, weight_decay: 0 },
        early_stopping: { patience: 1, min_delta: 1 },
      }),
      ...data(),
      checkpointDir: await tmp('es-'),
    });
    expect(r.stoppedEarly).toBe(true);
    expect(r.epochsRun).toBe(2);
    r.model.dispose();
  });
});

describe('optimizers', () => {
  it('AdamW applies decoupled weight decay to kernels only', async () => {
    const base = tinyConfig({ epochs: 1, augmentation: { enabled: false } });
    const norms = async (opt: 'adam' | 'adamw', wd: number) => {
      const r = await train({
        config: { ...base, optimizer: { name: opt, lr: 0.05, weight_decay: wd } },
        ...data(),
        checkpointDir: await tmp('opt-'),
      });
      const out = r.model.trainableWeights.map((w) => ({
        rank: w.shape.length,
        sq: tf.sum(tf.square(w.read())).dataSync()[0],
      }));
      r.model.dispose();
      return out;
    };
    const adam = await norms('adam', 0);
    const adamw = await norms('adamw', 2);
    const kernels = (xs: { rank: number; sq: number }[]) =>
      xs.filter((x) => x.rank > 1).reduce((a, b) => a + b.sq, 0);
    expect(kernels(adamw)).toBeLessThan(kernels(adam) * 0.9);
  });
});

describe('checkpoints', () => {
  it('round trip restores weights and Adam moments exactly', async () => {
    const dir = await tmp('ck-');
    const r = await train({ config: tinyConfig({ epochs: 1 }), ...data(), checkpointDir: dir });
    const [newest] = await listEpochCheckpoints(dir);
    expect(await verifyCheckpoint(newest)).toBeNull();

    // Reference optimizer state: the one the trainer saved (iterations + first + second moments).
    const model = buildUNetLite({ imageSize: 32, widths: [4, 8], seed: 99 });
    const opt = createOptimizer(tinyConfig());
    const state = await loadCheckpoint(newest, model, opt);
    expect(state.epoch).toBe(1);
    const a = r.model.getWeights().map((t) => Array.from(t.dataSync()));
    const b = model.getWeights().map((t) => Array.from(t.dataSync()));
    expect(b).toEqual(a);

    // Save again from the restored optimizer and compare the serialised moments byte for byte.
    const again = await saveCheckpoint(dir, 'copy', model, opt, state);
    const bin1 = await readFile(join(newest, 'optimizer.bin'));
    const bin2 = await readFile(join(again, 'optimizer.bin'));
    expect(bin2.length).toBeGreaterThan(8);
    expect(bin2.equals(bin1)).toBe(true);
    const moments = await opt.getWeights();
    expect(moments.length).toBe(1 + 2 * model.trainableWeights.length);
    r.model.dispose();
    model.dispose();
    opt.dispose();
  });

  it('a corrupt or truncated newest checkpoint falls back to the previous one with a warning', async () => {
    const dir = await tmp('ck-');
    const cfg = tinyConfig({ epochs: 3, checkpoint: { every_epochs: 1, keep_last: 3 } });
    const ref = await train({ config: cfg, ...data(), checkpointDir: await tmp('ref-') });
    (await train({ config: cfg, ...data(), checkpointDir: dir })).model.dispose();
    const [e3, e2] = await listEpochCheckpoints(dir);
    await truncate(join(e3, 'model', 'weights.bin'), 10);
    const warnings: string[] = [];
    expect(await findLatestValidCheckpoint(dir, (m) => warnings.push(m))).toBe(e2);
    expect(warnings[0]).toMatch(/epoch-0003 is corrupt .*weights\.bin/);
    // Resuming replays epoch 3 from epoch 2 and ends exactly like the uninterrupted run.
    const warned: string[] = [];
    const r = await train({
      config: cfg,
      ...data(),
      checkpointDir: dir,
      logger: { info: () => {}, warn: (m) => warned.push(m) },
    });
    expect(r.resumedFrom).toBe(e2);
    expect(warned.some((w) => w.includes('corrupt'))).toBe(true);
    expect(r.epochsRun).toBe(3);
    expect(lossesOf(r.history)).toEqual(lossesOf(ref.history));
    // A garbled manifest is detected too.
    await writeFile(join(e2, 'checkpoint.json'), '{ not json');
    expect(await verifyCheckpoint(e2)).toMatch(/checkpoint.json/);
    r.model.dispose();
    ref.model.dispose();
  });

  it('keeps the last K epoch checkpoints and best/', async () => {
    const dir = await tmp('ck-');
    const r = await train({
      config: tinyConfig({ epochs: 4, checkpoint: { every_epochs: 1, keep_last: 2 } }),
      ...data(),
      checkpointDir: dir,
    });
    expect((await listEpochCheckpoints(dir)).map((d) => d.slice(-10))).toEqual(['epoch-0004', 'epoch-0003']);
    expect(await verifyCheckpoint(join(dir, 'best'))).toBeNull();
    r.model.dispose();
  });
});

describe('reproducibility and cancellation', () => {
  it('the same seed gives the same losses; another seed does not', async () => {
    const cfg = tinyConfig({ epochs: 2 });
    const a = await train({ config: cfg, ...data(), checkpointDir: await tmp('rep-') });
    const b = await train({ config: cfg, ...data(), checkpointDir: await tmp('rep-') });
    const c = await train({ config: { ...cfg, seed: 8 }, ...data(), checkpointDir: await tmp('rep-') });
    expect(lossesOf(b.history)).toEqual(lossesOf(a.history));
    expect(c.history[1].loss).not.toBe(a.history[1].loss);
    for (const r of [a, b, c]) r.model.dispose();
  });

  it('abort mid-epoch writes a checkpoint and throws; resuming ends exactly like an uninterrupted run', async () => {
    const cfg = childConfig();
    const ref = await train({ config: cfg, ...data(), checkpointDir: await tmp('ref-') });
    const dir = await tmp('cancel-');
    const ac = new AbortController();
    let batches = 0;
    const run = train({
      config: cfg,
      ...data(),
      checkpointDir: dir,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.stage === 'train' && p.loss !== undefined && p.valLoss === undefined && ++batches === 6)
          ac.abort();
      },
    });
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingCancelled);
    expect((err as TrainingCancelled).checkpoint).toMatch(/epoch-0001$/); // epoch 2 (index 1) in progress
    const r = await train({ config: cfg, ...data(), checkpointDir: dir });
    expect(r.resumedFrom).toMatch(/epoch-0001$/);
    expect(r.epochsRun).toBe(cfg.epochs);
    expect(lossesOf(r.history)).toEqual(lossesOf(ref.history));
    expect(tf.memory().numTensors).toBeGreaterThan(0);
    r.model.dispose();
    ref.model.dispose();
  });
});
