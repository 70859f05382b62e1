import { describe, expect, it } from 'vitest';
import { defaultTrainingConfig } from '../lib/config/schema';
import { flattenParams, trackerOptionsForStep } from '../lib/monitor/step-tracking';

describe('step tracking conventions', () => {
  it('flattens the training config into MLflow params', () => {
    const p = flattenParams(defaultTrainingConfig());
    expect(p['optimizer.lr']).toBe(1e-4);
    expect(p['model.widths']).toBe('16,32,64,128');
    expect(p['loss.perceptual_model']).toBe('null');
    expect(p['augmentation.hflip']).toBe(true);
    expect(Object.values(p).every((v) => ['string', 'number', 'boolean'].includes(typeof v))).toBe(true);
  });

  it('names runs and folders per pipeline run, category and step', () => {
    const o = trackerOptionsForStep({
      pipeline: 'quick',
      runId: 'r1',
      category: 'bottle',
      step: 'train',
      stepDir: '/runs/quick/r1/bottle/train',
    });
    expect(o.logDir).toBe('/runs/quick/r1/bottle/train/tensorboard');
    expect(o.runName).toBe('quick/r1/bottle');
    expect(o.experiment).toBe('quick');
    expect(o.tags).toEqual({ pipeline: 'quick', runId: 'r1', category: 'bottle', step: 'train' });
  });
});
