import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  auroc,
  averagePrecision,
  confusionAt,
  f1Max,
  imageMetrics,
  metricsAt,
  perDefectType,
  rankedCounts,
  youden,
} from '../lib/eval/metrics';
import { pixelMetrics, trapezoid } from '../lib/eval/pixel-metrics';
import { labelRegions8 } from '../lib/eval/regions';
import { argsortDescending } from '../lib/eval/sort';

const fixtures = join(import.meta.dirname, 'fixtures');

describe('image metrics, hand-checked', () => {
  it('AUROC and AP without ties (sklearn docs example)', () => {
    // scores 0.1 0.4 0.35 0.8, labels 0 0 1 1.
    // AUROC = fraction of (pos, neg) pairs ranked right: 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4.
    // AP: descending 0.8(+) P=1 R=.5 | 0.4(-) | 0.35(+) P=2/3 R=1 -> .5*1 + .5*2/3 = 5/6.
    const c = rankedCounts([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]);
    expect(auroc(c).value).toBeCloseTo(0.75, 12);
    expect(averagePrecision(c).value).toBeCloseTo(5 / 6, 12);
  });

  it('ties count half in AUROC and enter the PR curve as one step', () => {
    // scores 0.5 0.5 0.2 0.9, labels 1 0 0 1. Pairs: (0.5+,0.5-) tie = 1/2, (0.5+,0.2-) 1,
    // (0.9+, both) 2 -> 3.5/4 = 0.875. AP: 0.9: P=1 R=.5; 0.5 (both): P=2/3 R=1 -> .5 + .5*2/3 = 5/6.
    const c = rankedCounts([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]);
    expect(auroc(c).value).toBeCloseTo(0.875, 12);
    expect(averagePrecision(c).value).toBeCloseTo(5 / 6, 12);
  });

  it('F1 at a threshold, F1-max, Youden and the confusion matrix', () => {
    // scores 0.1 0.4 0.35 0.8 (labels 0 0 1 1), threshold 0.35 -> predicted 0 1 1 1:
    // tp 2 fp 1 tn 1 fn 0, precision 2/3, recall 1, F1 = 4/5.
    const s = [0.1, 0.4, 0.35, 0.8];
    const y = [0, 0, 1, 1];
    const m = metricsAt(confusionAt(s, y, 0.35), 0.35);
    expect(m.confusion).toEqual({ tp: 2, fp: 1, tn: 1, fn: 0 });
    expect(m.precision.value).toBeCloseTo(2 / 3, 12);
    expect(m.recall.value).toBe(1);
    expect(m.f1.value).toBeCloseTo(0.8, 12);
    // F1 per threshold: 0.8 -> 2/3, 0.4 -> 1/2, 0.35 -> 4/5, 0.1 -> 2/3: best 0.8 at 0.35.
    const best = f1Max(rankedCounts(s, y));
    expect(best.f1.value).toBeCloseTo(0.8, 12);
    expect(best.threshold).toBe(0.35);
    // J = TPR - FPR: 0.8 -> .5, 0.4 -> 0, 0.35 -> .5, 0.1 -> 0; tie -> highest threshold 0.8.
    const j = youden(rankedCounts(s, y));
    expect(j.j.value).toBeCloseTo(0.5, 12);
    expect(j.threshold).toBe(0.8);
  });

  it('undefined cases carry a reason, never NaN', () => {
    const oneClass = rankedCounts([0.1, 0.2], [0, 0]);
    expect(auroc(oneClass)).toEqual({ value: null, reason: 'no defective images (only one class)' });
    expect(averagePrecision(oneClass).value).toBeNull();
    expect(f1Max(oneClass).f1.value).toBeNull();
    expect(auroc(rankedCounts([1, 1], [1, 1])).reason).toMatch(/no good/);
    const tied = rankedCounts([0.3, 0.3, 0.3], [0, 1, 0]);
    expect(auroc(tied).reason).toMatch(/all 3 scores are equal/);
    expect(youden(tied).j.value).toBeNull();
    const m = metricsAt(confusionAt([0.1], [0], 0.5), 0.5);
    expect(m.precision.value).toBeNull();
    expect(m.f1.reason).toBe('no defective images');
    expect(JSON.stringify(imageMetrics([0.2, 0.2], [0, 0], 0.1))).not.toMatch(/NaN|Infinity/);
  });

  it('per defect type: each type against all good images', () => {
    // good 0.1 0.2; scratch 0.3 0.15; dent 0.9. Threshold 0.25.
    // scratch vs good: pairs (.3>.1,.3>.2,.15>.1,.15<.2) = 3/4, detected 1/2; dent: 1, detected 1.
    const rows = perDefectType(
      [0.1, 0.2, 0.3, 0.15, 0.9],
      [0, 0, 1, 1, 1],
      ['good', 'good', 'scratch', 'scratch', 'dent'],
      0.25,
    );
    expect(rows.map((r) => r.defectType)).toEqual(['dent', 'scratch']);
    expect(rows[1].auroc.value).toBeCloseTo(0.75, 12);
    expect(rows[1].detected.value).toBe(0.5);
    expect(rows[0].auroc.value).toBe(1);
    expect(rows[1].meanScore).toBeCloseTo(0.225, 12);
  });
});

interface ImageCase {
  name: string;
  scores: number[];
  labels: number[];
  auroc: number;
  ap: number;
  f1max: number;
  f1maxThreshold: number;
  youdenJ: number;
  fixedThreshold: number;
  f1AtFixed: number;
}

describe('image metrics vs scikit-learn fixtures', () => {
  const { cases } = JSON.parse(readFileSync(join(fixtures, 'metrics_sklearn.json'), 'utf8')) as {
    cases: ImageCase[];
  };
  for (const fx of cases) {
    it(fx.name, () => {
      const m = imageMetrics(fx.scores, fx.labels, fx.fixedThreshold);
      expect(m.auroc.value).toBeCloseTo(fx.auroc, 12);
      expect(m.ap.value).toBeCloseTo(fx.ap, 12);
      expect(m.atThreshold.f1.value).toBeCloseTo(fx.f1AtFixed, 12);
      expect(m.f1Max.f1.value).toBeCloseTo(fx.f1max, 12);
      // The threshold may differ only where F1 ties exactly (float rounding decides): check its F1.
      const f1AtBest = metricsAt(confusionAt(fx.scores, fx.labels, m.f1Max.threshold!), 0).f1.value;
      expect(f1AtBest).toBeCloseTo(fx.f1max, 12);
      expect(youden(rankedCounts(fx.scores, fx.labels)).j.value).toBeCloseTo(fx.youdenJ, 12);
    });
  }
});

describe('pixel metrics', () => {
  it('8-connected regions', () => {
    // 1 1 0 0
    // 0 0 1 0   <- touches the first region diagonally: same region
    // 0 0 0 0
    // 1 0 0 1   <- two isolated pixels
    const r = labelRegions8([1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1], 4, 4);
    expect(r.count).toBe(3);
    expect(r.sizes).toEqual([3, 1, 1]);
  });

  it('AUPRO by hand: one region of 2 px, half found at FPR 0', () => {
    // map 0.9 0.1 0.8 0.2 0.3, mask 1 1 0 0 0. Descending: 0.9 (region, PRO .5, FPR 0), 0.8/0.3/0.2
    // (FPR 1/3, 2/3, 1, PRO .5), 0.1 (PRO 1). Up to FPR .3 the curve is flat at .5: area .15 / .3 = .5.
    // Pixel AUROC: 0.9 beats all 3 negatives, 0.1 none -> 3/6.
    const m = pixelMetrics(
      new Float32Array([0.9, 0.1, 0.8, 0.2, 0.3]),
      new Uint8Array([1, 1, 0, 0, 0]),
      1,
      1,
      5,
    );
    expect(m.aupro.value).toBeCloseTo(0.5, 6);
    expect(m.auroc.value).toBeCloseTo(0.5, 6);
    expect(m.regions).toBe(1);
  });

  it('AUPRO is 1 for a perfect map, undefined without defects', () => {
    const mask = new Uint8Array([0, 1, 1, 0, 0, 0, 0, 0, 1]);
    const map = Float32Array.from(mask, (v, i) => v * 0.5 + 0.01 * i);
    expect(pixelMetrics(map, mask, 1, 3, 3).aupro.value).toBeCloseTo(1, 12);
    const none = pixelMetrics(map, new Uint8Array(9), 1, 3, 3);
    expect(none.aupro).toEqual({ value: null, reason: 'no defect pixels in the ground truth' });
  });

  it('trapezoid interpolates at the limit as the MVTec script does', () => {
    // y = x on [0,1]: area to .3 = .045, with or without a sample at .3.
    expect(trapezoid([0, 1], [0, 1], 0.3)).toBeCloseTo(0.045, 12);
    expect(trapezoid([0, 0.3, 1], [0, 0.3, 1], 0.3)).toBeCloseTo(0.045, 12);
  });

  it('matches the MVTec reference algorithm and sklearn on several regions (fixture)', () => {
    const fx = JSON.parse(readFileSync(join(fixtures, 'pixel_aupro.json'), 'utf8')) as {
      n: number;
      height: number;
      width: number;
      maps: number[];
      masks: number[];
      regions: number;
      auroc: number;
      ap: number;
      aupro: number;
    };
    const m = pixelMetrics(Float32Array.from(fx.maps), Uint8Array.from(fx.masks), fx.n, fx.height, fx.width);
    expect(m.regions).toBe(fx.regions);
    expect(m.auroc.value).toBeCloseTo(fx.auroc, 10);
    expect(m.ap.value).toBeCloseTo(fx.ap, 10);
    expect(m.aupro.value).toBeCloseTo(fx.aupro, 6);
    // Same data twice (> 4096 values: the radix-sort path): every metric is unchanged.
    const twice = pixelMetrics(
      Float32Array.from([...fx.maps, ...fx.maps]),
      Uint8Array.from([...fx.masks, ...fx.masks]),
      2 * fx.n,
      fx.height,
      fx.width,
    );
    expect(twice.auroc.value).toBeCloseTo(fx.auroc, 10);
    expect(twice.aupro.value).toBeCloseTo(fx.aupro, 6);
  });

  it('radix argsort orders like a comparator sort, negatives and -0 included', () => {
    const v = Float32Array.from({ length: 10_000 }, (_, i) => Math.round(Math.sin(i * 12.9898) * 50) / 10);
    v[3] = -0;
    v[4] = 0;
    const order = argsortDescending(v);
    for (let i = 1; i < order.length; i++) expect(v[order[i - 1]]).toBeGreaterThanOrEqual(v[order[i]]);
    expect(new Set(order).size).toBe(v.length);
  });
});
