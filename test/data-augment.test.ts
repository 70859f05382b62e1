import { describe, expect, it } from 'vitest';
import { augmentationSchema, syntheticDefectsSchema } from '../lib/config/schema';
import { augmentBatch, toFloatBatch } from '../lib/data/augment';
import { withSyntheticDefects } from '../lib/data/synthetic-defects';
import { Rng } from '../lib/util/rng';

const S = 16;
function batch(n: number): Uint8Array {
  const r = new Rng(5);
  return Uint8Array.from({ length: n * S * S * 3 }, () => r.int(256));
}
const cfg = (over: object) => augmentationSchema.parse(over);
const still = {
  rotation_limit: 0,
  hflip: false,
  vflip: false,
  noise_factor: 0,
  brightness_limit: 0,
  contrast_limit: 0,
};

describe('Rng', () => {
  it('is deterministic, in range, and resumable from its numeric state', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(xs).toEqual(Array.from({ length: 100 }, () => b.next()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Rng(43).next()).not.toBe(xs[0]);
    const saved = a.state;
    expect(typeof saved).toBe('number');
    const next = [a.next(), a.normal(), a.int(10)];
    const c = new Rng(0);
    c.state = saved;
    expect([c.next(), c.normal(), c.int(10)]).toEqual(next);
    expect(new Rng(1).shuffle([1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
    const normals = Array.from({ length: 4000 }, () => a.normal());
    const mean = normals.reduce((s, v) => s + v, 0) / normals.length;
    const sd = Math.sqrt(normals.reduce((s, v) => s + (v - mean) ** 2, 0) / normals.length);
    expect(Math.abs(mean)).toBeLessThan(0.08);
    expect(Math.abs(sd - 1)).toBeLessThan(0.08);
  });
});

describe('augmentation', () => {
  const imgs = batch(4);

  it('toFloatBatch scales the selected images to [0,1]', () => {
    const out = toFloatBatch(imgs, [2, 0], S);
    expect(out).toHaveLength(2 * S * S * 3);
    expect(out[0]).toBeCloseTo(imgs[2 * S * S * 3] / 255, 6);
    expect(out[S * S * 3]).toBeCloseTo(imgs[0] / 255, 6);
  });

  it('is the identity when every transform is off, and when disabled', () => {
    const plain = toFloatBatch(imgs, [1, 3], S);
    expect(augmentBatch(imgs, [1, 3], S, cfg(still), new Rng(1))).toEqual(plain);
    expect(augmentBatch(imgs, [1, 3], S, cfg({ enabled: false }), new Rng(1))).toEqual(plain);
  });

  it('is deterministic for a seed and stays in [0,1]', () => {
    const c = cfg({ vflip: true });
    const a = augmentBatch(imgs, [0, 1, 2, 3], S, c, new Rng(9));
    expect(augmentBatch(imgs, [0, 1, 2, 3], S, c, new Rng(9))).toEqual(a);
    expect(augmentBatch(imgs, [0, 1, 2, 3], S, c, new Rng(10))).not.toEqual(a);
    expect(a.every((v) => v >= 0 && v <= 1)).toBe(true);
  });

  it('flips horizontally exactly', () => {
    const plain = toFloatBatch(imgs, [0], S);
    const mirrored = new Float32Array(plain.length);
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++)
        for (let k = 0; k < 3; k++) mirrored[(y * S + x) * 3 + k] = plain[(y * S + S - 1 - x) * 3 + k];
    const seen = new Set<string>();
    for (let seed = 0; seed < 8; seed++) {
      const out = augmentBatch(imgs, [0], S, cfg({ ...still, hflip: true }), new Rng(seed));
      const isPlain = out.every((v, i) => Math.abs(v - plain[i]) < 1e-5);
      const isMirror = out.every((v, i) => Math.abs(v - mirrored[i]) < 1e-5);
      expect(isPlain || isMirror).toBe(true);
      seen.add(isPlain ? 'plain' : 'mirror');
    }
    expect(seen.size).toBe(2);
  });

  it('rotates within the limit (a centred symmetric blob stays centred)', () => {
    const img = new Uint8Array(S * S * 3);
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++)
        if (Math.hypot(x - 7.5, y - 7.5) < 4) img.fill(255, (y * S + x) * 3, (y * S + x) * 3 + 3);
    const out = augmentBatch(img, [0], S, cfg({ ...still, rotation_limit: 30 }), new Rng(3));
    let sum = 0;
    let cx = 0;
    for (let i = 0; i < S * S; i++) {
      sum += out[i * 3];
      cx += out[i * 3] * (i % S);
    }
    expect(cx / sum).toBeCloseTo(7.5, 0);
  });

  it('handles a 32x128x128 batch quickly', () => {
    const size = 128;
    const big = new Uint8Array(32 * size * size * 3).fill(128);
    const t0 = performance.now();
    const out = augmentBatch(
      big,
      Array.from({ length: 32 }, (_, i) => i),
      size,
      cfg({}),
      new Rng(1),
    );
    const ms = performance.now() - t0;
    expect(out).toHaveLength(32 * size * size * 3);
    expect(ms).toBeLessThan(3000); // typically ~150 ms; generous for a loaded 2-core CI machine
  });
});

describe('synthetic defects', () => {
  const defects = (over: object) => syntheticDefectsSchema.parse(over);
  const clean = toFloatBatch(batch(6), [0, 1, 2, 3, 4, 5], S);

  it('probability 0 trains on the clean images themselves', () => {
    expect(withSyntheticDefects(clean, 6, S, defects({ probability: 0 }), new Rng(1))).toBe(clean);
  });

  it('pastes patches into a copy: deterministic per seed, in range, bounded in size, clean left as it was', () => {
    const before = clean.slice();
    const cfg = defects({ probability: 1, max_count: 1, min_size: 0.25, max_size: 0.25 });
    const a = withSyntheticDefects(clean, 6, S, cfg, new Rng(3));
    const b = withSyntheticDefects(clean, 6, S, cfg, new Rng(3));
    expect(a).toEqual(b);
    expect(clean).toEqual(before);
    expect(a.every((v) => v >= 0 && v <= 1)).toBe(true);
    const per = S * S * 3;
    for (let img = 0; img < 6; img++) {
      // One 4x4 patch (0.25 of 16 px): some pixels changed, all inside a 4x4 box.
      const changed: [number, number][] = [];
      for (let i = 0; i < S * S; i++) {
        const o = img * per + i * 3;
        if ([0, 1, 2].some((k) => a[o + k] !== clean[o + k])) changed.push([i % S, Math.floor(i / S)]);
      }
      expect(changed.length).toBeGreaterThan(0);
      const xs = changed.map(([x]) => x);
      const ys = changed.map(([, y]) => y);
      expect(Math.max(...xs) - Math.min(...xs)).toBeLessThan(4);
      expect(Math.max(...ys) - Math.min(...ys)).toBeLessThan(4);
    }
    const other = withSyntheticDefects(clean, 6, S, cfg, new Rng(4));
    expect(other).not.toEqual(a);
  });

  it('probability is the share of images that get defects', () => {
    const n = 400;
    const many = toFloatBatch(batch(1), new Array(n).fill(0), S);
    const out = withSyntheticDefects(many, n, S, defects({ probability: 0.3 }), new Rng(9));
    const per = S * S * 3;
    let hit = 0;
    for (let img = 0; img < n; img++) {
      for (let k = img * per; k < (img + 1) * per; k++) {
        if (out[k] !== many[k]) {
          hit++;
          break;
        }
      }
    }
    expect(hit / n).toBeGreaterThan(0.22);
    expect(hit / n).toBeLessThan(0.38);
  });

  it('rejects min_size above max_size, naming the field', () => {
    const r = syntheticDefectsSchema.safeParse({ min_size: 0.5, max_size: 0.2 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0].path).toEqual(['min_size']);
  });
});
