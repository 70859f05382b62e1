import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syntheticDefectsSchema } from '../lib/config/schema';
import {
  ANOMALY_KINDS,
  applySyntheticDefects,
  generateAnomalies,
  MASK_ALPHA_THRESHOLD,
} from '../lib/data/anomaly-generator';
import { withSyntheticDefects } from '../lib/data/synthetic-defects';
import { selectBackend } from '../lib/model/backend';
import { train } from '../lib/train/trainer';
import { Rng } from '../lib/util/rng';
import { lossesOf, tinyConfig, tinySplit } from './support/train-fixtures';

const S = 32;
const PX = S * S;

/** Smooth, varied good images (gradients + a sinusoid), so that every source differs from them. */
function goodImages(n: number, seed = 1): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n * PX * 3);
  for (let b = 0; b < n; b++) {
    const f = rng.uniform(0.1, 0.5);
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++)
        for (let k = 0; k < 3; k++)
          out[((b * S + y) * S + x) * 3 + k] = 0.3 + 0.2 * Math.sin(f * x + k) + (0.3 * y) / S + 0.05 * k;
  }
  return out;
}

describe('realistic anomaly generator', () => {
  it('masks are exact: outside the mask the image is unchanged, inside it is the blend', () => {
    const n = 6;
    const clean = goodImages(n);
    for (const kind of ANOMALY_KINDS) {
      const { images, masks, anomalies } = generateAnomalies(
        clean,
        n,
        S,
        { probability: 1, kinds: [kind] },
        new Rng(7),
      );
      expect(anomalies.length).toBeGreaterThanOrEqual(n);
      let changedInside = 0;
      let changedOutside = 0;
      let notBinary = 0;
      for (let b = 0; b < n; b++)
        for (let p = 0; p < PX; p++) {
          const m = masks[b * PX + p];
          if (m !== 0 && m !== 1) notBinary++;
          for (let k = 0; k < 3; k++) {
            const i = (b * PX + p) * 3 + k;
            if (images[i] === clean[i]) continue;
            if (m === 0) changedOutside++;
            else changedInside++;
          }
        }
      expect(notBinary).toBe(0);
      expect(changedOutside, kind).toBe(0);
      // Each kind changes the image inside its mask (a source never equals the image everywhere).
      expect(changedInside, kind).toBeGreaterThan(0);
      expect(images.every((v) => Number.isFinite(v) && v >= 0 && v <= 1)).toBe(true);
    }
  });

  it('is deterministic for a seed and differs across seeds; the input is not modified', () => {
    const clean = goodImages(4);
    const copy = clean.slice();
    const a = generateAnomalies(clean, 4, S, { probability: 1 }, new Rng(3));
    const b = generateAnomalies(clean, 4, S, { probability: 1 }, new Rng(3));
    const c = generateAnomalies(clean, 4, S, { probability: 1 }, new Rng(4));
    expect(a.images).toEqual(b.images);
    expect(a.masks).toEqual(b.masks);
    expect(a.anomalies).toEqual(b.anomalies);
    expect(c.masks).not.toEqual(a.masks);
    expect(clean).toEqual(copy);
    // The rng advances the same way too, so a resumed trainer sees the same sequence.
    const r1 = new Rng(3);
    const r2 = new Rng(3);
    generateAnomalies(clean, 4, S, { probability: 1 }, r1);
    generateAnomalies(clean, 4, S, { probability: 1 }, r2);
    expect(r1.state).toBe(r2.state);
  });

  it('draws opacities within the range, at least the mask threshold', () => {
    const clean = goodImages(8);
    const { anomalies } = generateAnomalies(clean, 8, S, { probability: 1, maxCount: 4 }, new Rng(11));
    for (const a of anomalies) {
      expect(a.opacity).toBeGreaterThanOrEqual(0.1);
      expect(a.opacity).toBeLessThanOrEqual(1);
      expect(a.opacity).toBeGreaterThanOrEqual(MASK_ALPHA_THRESHOLD);
    }
    const narrow = generateAnomalies(
      clean,
      8,
      S,
      { probability: 1, minOpacity: 0.4, maxOpacity: 0.6 },
      new Rng(2),
    );
    for (const a of narrow.anomalies) expect(a.opacity >= 0.4 && a.opacity <= 0.6).toBe(true);
    // Spread over the range, not one value.
    const ops = anomalies.map((a) => a.opacity);
    expect(Math.max(...ops) - Math.min(...ops)).toBeGreaterThan(0.4);
    expect(() => generateAnomalies(clean, 8, S, { minOpacity: 0.05 }, new Rng(1))).toThrow(/opacity/);
  });

  it('Perlin regions cover an area in the configured range; the mask is their union', () => {
    const n = 10;
    const clean = goodImages(n);
    const minArea = 0.02;
    const maxArea = 0.2;
    const kinds = ANOMALY_KINDS.filter((k) => k !== 'stroke');
    const { masks, anomalies } = generateAnomalies(
      clean,
      n,
      S,
      { probability: 1, maxCount: 1, minArea, maxArea, kinds },
      new Rng(5),
    );
    expect(anomalies).toHaveLength(n);
    for (const a of anomalies) {
      expect(a.area).toBeGreaterThanOrEqual(Math.round(minArea * PX));
      expect(a.area).toBeLessThanOrEqual(Math.round(maxArea * PX));
      let m = 0;
      for (let p = 0; p < PX; p++) m += masks[a.image * PX + p];
      expect(m).toBe(a.area); // one anomaly per image: the mask is exactly its region
    }
    // Strokes are thin: a small share of the image.
    const strokes = generateAnomalies(clean, n, S, { probability: 1, kinds: ['stroke'] }, new Rng(6));
    for (const a of strokes.anomalies) expect(a.area).toBeLessThan(0.25 * PX);
  });

  it('uses each source kind', () => {
    const clean = goodImages(8);
    const seen = new Set<string>();
    const rng = new Rng(21);
    for (let i = 0; i < 10; i++)
      for (const a of generateAnomalies(clean, 8, S, { probability: 1, maxCount: 3 }, rng).anomalies)
        seen.add(a.kind);
    expect([...seen].sort()).toEqual([...ANOMALY_KINDS].sort());
  });

  it('probability: 0 returns the input; probability is the share of images with anomalies', () => {
    const clean = goodImages(40);
    const cfg = syntheticDefectsSchema.parse({ probability: 0, generator: 'realistic' });
    expect(applySyntheticDefects(clean, 40, S, cfg, new Rng(1))).toBe(clean);
    const { masks } = generateAnomalies(clean, 40, S, { probability: 0.3 }, new Rng(9));
    let hit = 0;
    for (let b = 0; b < 40; b++) if (masks.subarray(b * PX, (b + 1) * PX).includes(1)) hit++;
    expect(hit).toBeGreaterThan(4);
    expect(hit).toBeLessThan(22);
  });

  it("the config's generator picks the implementation; 'patches' stays the default", () => {
    const clean = goodImages(4);
    const def = syntheticDefectsSchema.parse({ probability: 1 });
    expect(def.generator).toBe('patches');
    expect(applySyntheticDefects(clean, 4, S, def, new Rng(2))).toEqual(
      withSyntheticDefects(clean, 4, S, def, new Rng(2)),
    );
    const real = syntheticDefectsSchema.parse({ probability: 1, generator: 'realistic' });
    const out = applySyntheticDefects(clean, 4, S, real, new Rng(2));
    expect(out).toEqual(
      generateAnomalies(
        clean,
        4,
        S,
        { probability: 1, maxCount: 2, minArea: 0.0025, maxArea: 0.0625 },
        new Rng(2),
      ).images,
    );
    expect(out).not.toEqual(clean);
    expect(syntheticDefectsSchema.safeParse({ generator: 'draem' }).success).toBe(false);
  });
});

describe("the trainer with generator: 'realistic'", () => {
  it('trains on realistic anomalies, reproducibly, and differently from patches', async () => {
    await selectBackend('wasm', 'train');
    const run = async (generator: 'patches' | 'realistic') => {
      const config = tinyConfig({ epochs: 1, synthetic_defects: { probability: 1, generator } });
      const dir = await mkdtemp(join(tmpdir(), 'anomaly-gen-'));
      const r = await train({ config, train: tinySplit(8), val: null, checkpointDir: dir, imageEvery: 0 });
      r.model.dispose();
      return lossesOf(r.history);
    };
    const a = await run('realistic');
    const b = await run('realistic');
    const p = await run('patches');
    expect(a.every((h) => Number.isFinite(h.loss) && h.loss > 0)).toBe(true);
    expect(b).toEqual(a);
    expect(p).not.toEqual(a);
  }, 120_000);
});
