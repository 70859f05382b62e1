import { describe, expect, it } from 'vitest';
import { thresholdSchema } from '../lib/config/schema';
import { normaliseScore } from '../lib/eval/calibration';
import { computeThresholds, fprThreshold, nextUp, percentile, scoreNormFor } from '../lib/eval/thresholds';

// 100 good validation scores 0.00, 0.01, ..., 0.99.
const good = Array.from({ length: 100 }, (_, i) => i / 100);
const goodLabels = good.map(() => 0);

describe('threshold strategies', () => {
  it('good-only validation: unsupervised strategies defined, f1/youden say why not, fallback recorded', () => {
    const sel = computeThresholds(good, goodLabels, thresholdSchema.parse({ strategy: 'f1' }));
    const by = Object.fromEntries(sel.strategies.map((s) => [s.strategy, s]));
    // numpy linear percentile: position .99 * 99 = 98.01 -> 0.98 + .01 * .01.
    expect(by.percentile.value).toBeCloseTo(0.9801, 12);
    // mean .495, population std = .01 * sqrt((100^2 - 1) / 12).
    expect(by.mean_std.value).toBeCloseTo(0.495 + 3 * 0.01 * Math.sqrt(9999 / 12), 12);
    // fpr .01: the top score alone (1/100) is allowed, two are not.
    expect(by.fpr.value).toBe(0.99);
    expect(by.fpr.valFpr).toBe(0.01);
    expect(by.f1).toMatchObject({
      value: null,
      reason: 'needs defective validation images; none in the validation split',
    });
    expect(by.youden.value).toBeNull();
    expect(sel.selected).toBe('percentile');
    expect(sel.fallback).toEqual({
      from: 'f1',
      to: 'percentile',
      reason: 'f1: needs defective validation images; none in the validation split',
    });
    expect(sel.imageThreshold).toBe(by.percentile.value);
    expect(JSON.stringify(sel)).not.toMatch(/NaN|Infinity/);
  });

  it('labelled defective validation images make f1 and youden computable', () => {
    // good .1 .2 .3, defective .25 .8: F1 at .8 = 2/3, at .25 = 4/5 (tp 2 fp 1), at .2 = 4/6 -> .25.
    const sel = computeThresholds(
      [0.1, 0.2, 0.3, 0.25, 0.8],
      [0, 0, 0, 1, 1],
      thresholdSchema.parse({ strategy: 'f1' }),
    );
    expect(sel.selected).toBe('f1');
    expect(sel.fallback).toBeNull();
    expect(sel.imageThreshold).toBe(0.25);
    expect(sel.strategies.find((s) => s.strategy === 'f1')?.valTpr).toBe(1);
    // J: .8 -> .5, .3 -> .5 - 1/3, .25 -> 1 - 1/3 = 2/3 (best), .2 -> 1 - 2/3.
    expect(sel.strategies.find((s) => s.strategy === 'youden')?.value).toBe(0.25);
    expect(sel.validation).toEqual({ good: 3, defective: 2 });
  });

  it('fpr below 1/n puts the threshold just above the highest good score; ties enter together', () => {
    expect(fprThreshold([0.1, 0.5, 0.3], 0.1)).toBe(nextUp(0.5));
    expect(nextUp(0.5)).toBeGreaterThan(0.5);
    // 0.5 is tied twice: allowing 1/4 cannot include it (2/4), so 0.5 is not a valid threshold.
    expect(fprThreshold([0.1, 0.5, 0.5, 0.3], 0.25)).toBe(nextUp(0.5));
    expect(fprThreshold([0.1, 0.5, 0.5, 0.3], 0.5)).toBe(0.5);
  });

  it('few good images: empirical tails are not used, mean + k std is; the report says why', () => {
    // 6 good scores (as the demo's validation split): their 99th percentile is almost their maximum.
    const six = [0.1, 0.2, 0.25, 0.3, 0.35, 0.4];
    const sel = computeThresholds(
      six,
      six.map(() => 0),
      thresholdSchema.parse({}),
    );
    const by = Object.fromEntries(sel.strategies.map((s) => [s.strategy, s]));
    expect(by.percentile.value).toBeCloseTo(0.3975, 12); // still computed and reported
    expect(by.percentile.unreliable).toBe(
      'the 99th percentile needs at least 100 good validation images, there are 6',
    );
    expect(by.fpr.unreliable).toBe(
      'a false-positive rate of 0.01 needs at least 100 good validation images, there are 6',
    );
    expect(by.mean_std.unreliable).toBeUndefined();
    expect(sel.selected).toBe('mean_std');
    expect(sel.imageThreshold).toBe(by.mean_std.value);
    expect(sel.fallback).toEqual({
      from: 'percentile',
      to: 'mean_std',
      reason: 'percentile: the 99th percentile needs at least 100 good validation images, there are 6',
    });
    // f1 requested on good-only data: both skipped steps are named.
    const f1 = computeThresholds(
      six,
      six.map(() => 0),
      thresholdSchema.parse({ strategy: 'f1' }),
    );
    expect(f1.selected).toBe('mean_std');
    expect(f1.fallback?.reason).toBe(
      'f1: needs defective validation images; none in the validation split; percentile: the 99th percentile needs at least 100 good validation images, there are 6',
    );
    // A lower percentile needs fewer images: the 80th of 6 is used as asked.
    const p80 = computeThresholds(
      six,
      six.map(() => 0),
      thresholdSchema.parse({ percentile: 80 }),
    );
    expect(p80.selected).toBe('percentile');
    expect(p80.fallback).toBeNull();
  });

  it('a single good image: nothing reliable, the first defined strategy is used; no good images is a user error', () => {
    const sel = computeThresholds([0.4], [0], thresholdSchema.parse({ strategy: 'mean_std' }));
    expect(sel.selected).toBe('percentile');
    expect(sel.fallback?.reason).toBe('mean_std: needs at least 2 good validation images');
    expect(sel.imageThreshold).toBe(0.4);
    expect(() => computeThresholds([0.4], [1], thresholdSchema.parse({}))).toThrow(
      /no good images in the validation split/,
    );
  });

  it('percentile matches numpy on unsorted input', () => {
    // np.percentile([3, 1, 2, 10], 50) = 2.5; 90 -> position 2.7 -> 3 + .7 * 7 = 7.9.
    expect(percentile([3, 1, 2, 10], 50)).toBe(2.5);
    expect(percentile([3, 1, 2, 10], 90)).toBeCloseTo(7.9, 12);
  });
});

describe('score normalisation', () => {
  it('maps min -> 0, threshold -> 0.5, above the threshold into (0.5, 1], clamped', () => {
    const norm = scoreNormFor([0.2, 0.4, 0.3], 0.6); // min .2, max .6 + .4 = 1.0
    expect(norm).toEqual({ min: 0.2, max: 1.0 });
    const cal = { imageThreshold: 0.6, scoreNorm: norm };
    expect(normaliseScore(0.2, cal)).toBe(0);
    expect(normaliseScore(0.4, cal)).toBeCloseTo(0.25, 12);
    expect(normaliseScore(0.6, cal)).toBe(0.5);
    expect(normaliseScore(0.8, cal)).toBeCloseTo(0.75, 12);
    expect(normaliseScore(5, cal)).toBe(1);
    expect(normaliseScore(-1, cal)).toBe(0);
    // The decision is the same on both scales.
    for (const s of [0.59, 0.6, 0.61]) expect(normaliseScore(s, cal) >= 0.5).toBe(s >= 0.6);
  });

  it('degenerate spans saturate instead of dividing by zero', () => {
    const cal = { imageThreshold: 0.5, scoreNorm: { min: 0.5, max: 0.5 } };
    expect(normaliseScore(0.4, cal)).toBe(0);
    expect(normaliseScore(0.5, cal)).toBe(0.5);
    expect(normaliseScore(0.6, cal)).toBe(1);
    const norm = scoreNormFor([0.5, 0.5], 0.5);
    expect(norm.min).toBeLessThan(0.5);
    expect(norm.max).toBeGreaterThan(0.5);
  });
});
