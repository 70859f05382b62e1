/** `training.min_steps`: small datasets train for a number of optimiser steps, not a handful of batches. */
import { describe, expect, it } from 'vitest';
import { defaultTrainingConfig } from '../lib/config/schema';
import { plannedEpochs } from '../lib/train/trainer';

describe('plannedEpochs', () => {
  const cfg = { ...defaultTrainingConfig(), epochs: 40, batch_size: 32 };
  it('is `epochs` without min_steps', () => {
    expect(plannedEpochs(cfg, 48)).toBe(40);
  });
  it('raises the epochs to reach min_steps on a small dataset, never lowers them on a large one', () => {
    // 48 images at batch 32: 2 steps an epoch; 1000 steps need 500 epochs.
    expect(plannedEpochs({ ...cfg, min_steps: 1000 }, 48)).toBe(500);
    // 400 images: 13 steps an epoch; 40 epochs are already 520 steps >= 500.
    expect(plannedEpochs({ ...cfg, min_steps: 500 }, 400)).toBe(40);
    // Fewer images than a batch: one step an epoch.
    expect(plannedEpochs({ ...cfg, min_steps: 100 }, 10)).toBe(100);
  });
});
