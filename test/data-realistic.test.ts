import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDataset } from '../lib/data/check';
import { dirSource, parseDep5, type RealCategorySpec, ufoaiSource } from '../lib/data/real-sources';
import { buildRealBenchmark, TEST_FRACTION } from '../lib/data/realbench';
import {
  MAX_AREA,
  MIN_AREA,
  MIN_CONTRAST,
  MIN_DELTA,
  MIN_MEAN_DELTA,
  makeRealisticDefect,
  REALISTIC_DEFECT_KINDS,
} from '../lib/data/realistic-defects';
import { readZipEntries } from '../lib/data/zip';
import { sha256 } from '../lib/util/atomic';
import { isUserError } from '../lib/util/errors';
import { Rng } from '../lib/util/rng';

/** A photo-like texture: smooth blotches plus grain, RGB bytes. */
function texture(size: number, seed: number, tint: [number, number, number] = [1, 0.9, 0.8]): Uint8Array {
  const rng = new Rng(seed);
  const out = new Uint8Array(size * size * 3);
  const ph = [rng.uniform(0, 6), rng.uniform(0, 6)];
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const v = 0.45 + 0.12 * Math.sin(x / 5 + ph[0]) * Math.cos(y / 7 + ph[1]) + 0.06 * rng.normal();
      for (let k = 0; k < 3; k++)
        out[(y * size + x) * 3 + k] = Math.max(0, Math.min(255, Math.round(255 * v * tint[k])));
    }
  return out;
}

describe('realistic defects', () => {
  const size = 48;
  const clean = texture(size, 7);
  const donor = texture(size, 8, [0.6, 0.8, 0.5]);

  it.each(REALISTIC_DEFECT_KINDS)('%s: exact mask, area in range, visible, deterministic', (kind) => {
    for (let seed = 0; seed < 4; seed++) {
      const r = makeRealisticDefect(kind, clean, size, new Rng(seed), donor);
      let inside = 0;
      for (let i = 0; i < size * size; i++) {
        const d = Math.max(...[0, 1, 2].map((k) => Math.abs(r.image[i * 3 + k] - clean[i * 3 + k])));
        if (r.mask[i] === 255) {
          inside++;
          expect(d).toBeGreaterThanOrEqual(MIN_DELTA);
        } else {
          expect(r.mask[i]).toBe(0);
          expect(d).toBe(0);
        }
      }
      const area = inside / (size * size);
      expect(area).toBeGreaterThanOrEqual(MIN_AREA);
      expect(area).toBeLessThanOrEqual(MAX_AREA);
      expect(r.params.kind).toBe(kind);
      expect(r.params.meanDelta).toBeGreaterThanOrEqual(MIN_MEAN_DELTA);
      expect(r.params.contrast).toBeGreaterThanOrEqual(MIN_CONTRAST[kind] - 0.01);
      const again = makeRealisticDefect(kind, clean, size, new Rng(seed), donor);
      expect(Buffer.from(again.image).equals(Buffer.from(r.image))).toBe(true);
      expect(Buffer.from(again.mask).equals(Buffer.from(r.mask))).toBe(true);
    }
  });

  it('does not modify its input', () => {
    const copy = new Uint8Array(clean);
    makeRealisticDefect('stain', clean, size, new Rng(3));
    expect(Buffer.from(copy).equals(Buffer.from(clean))).toBe(true);
  });
});

describe('real-photo benchmark builder', () => {
  let dir: string;
  let photos: string;
  const catalog: Record<string, RealCategorySpec> = {
    stone: {
      description: 'test stone',
      photos: [{ file: 'stone/a.png' }, { file: 'stone/b.png' }],
      scale: 1,
      rotate: true,
    },
    cloth: {
      description: 'test cloth',
      photos: [{ file: 'cloth/a.png', region: [0, 0, 96, 80] }],
      scale: 1.25,
      rotate: false,
    },
  };
  const opts = () => ({
    size: 32,
    seed: 3,
    trainGood: 4,
    testGood: 2,
    perDefect: 1,
    catalog,
    source: dirSource(photos, { package: 'fixture', licence: 'CC0-1.0' }),
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'realbench-'));
    photos = join(dir, 'photos');
    const files: [string, number, number, number][] = [
      ['stone/a.png', 96, 96, 1],
      ['stone/b.png', 80, 100, 2],
      ['cloth/a.png', 96, 96, 3],
    ];
    for (const [f, w, h, seed] of files) {
      const side = Math.max(w, h);
      const t = texture(side, seed, seed === 3 ? [0.5, 0.6, 1] : [1, 0.9, 0.8]);
      await mkdir(join(photos, f.split('/')[0]), { recursive: true });
      await sharp(Buffer.from(t), { raw: { width: side, height: side, channels: 3 } })
        .extract({ left: 0, top: 0, width: w, height: h })
        .png()
        .toFile(join(photos, f));
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const hashes = async (root: string) => {
    const out: Record<string, string> = {};
    const walk = async (d: string) => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else out[p.slice(root.length)] = sha256(await readFile(p));
      }
    };
    await walk(root);
    return out;
  };

  it('writes a valid MVTec layout with sources, deterministically', async () => {
    const out = join(dir, 'bench');
    const messages: string[] = [];
    expect(await buildRealBenchmark(out, { ...opts(), onProgress: (m) => messages.push(m) })).toBe(true);
    expect(messages.at(-1)).toMatch(/cloth: 12\/12 images/);
    const rows = await checkDataset(out, { valFraction: 0.2, seed: 0, decode: true });
    expect(rows.map((r) => r.category).sort()).toEqual(['cloth', 'stone']);
    for (const r of rows) {
      expect(r.problems).toEqual([]);
      expect(r.trainGood).toBe(4);
      expect(r.testGood).toBe(2);
      expect(Object.keys(r.defects).sort()).toEqual([...REALISTIC_DEFECT_KINDS].sort());
      expect(r.masks).toBe(REALISTIC_DEFECT_KINDS.length);
    }
    const meta = await sharp(join(out, 'stone/test/crack/000.png')).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([32, 32, 3]);

    const manifest = JSON.parse(await readFile(join(out, 'dataset.json'), 'utf8'));
    expect(manifest.sources.map((s: { licence: string }) => s.licence)).toEqual([
      'CC0-1.0',
      'CC0-1.0',
      'CC0-1.0',
    ]);
    // Train crops from the upper part of each photo region, test crops from the lower part.
    const heights: Record<string, [number, number]> = {
      'stone/a.png': [0, 96],
      'stone/b.png': [0, 100],
      'cloth/a.png': [0, 80],
    };
    for (const cat of ['stone', 'cloth'])
      for (const im of manifest.categories[cat].images) {
        const [y0, h] = heights[im.photo];
        const cut = y0 + Math.round(h * (1 - TEST_FRACTION));
        if (im.split === 'train') expect(im.y + im.side).toBeLessThanOrEqual(cut);
        else expect(im.y).toBeGreaterThanOrEqual(cut);
        if (cat === 'cloth') expect(im.orientation).toBeLessThan(4); // flips only
      }
    expect(await readFile(join(out, 'SOURCES.md'), 'utf8')).toContain('stone/a.png');

    const out2 = join(dir, 'bench2');
    expect(await buildRealBenchmark(out2, opts())).toBe(true);
    const [h1, h2] = [await hashes(out), await hashes(out2)];
    expect(Object.keys(h1).length).toBeGreaterThan(20);
    expect(h2).toEqual(h1);

    expect(await buildRealBenchmark(out, opts())).toBe(false); // exists: left alone
    const other = join(dir, 'bench3');
    await buildRealBenchmark(other, { ...opts(), seed: 4, categories: ['stone'] });
    expect((await hashes(other))['/stone/test/good/000.png']).not.toBe(h1['/stone/test/good/000.png']);
  });

  it('names the missing Debian package and how to install it', async () => {
    const err = await ufoaiSource(join(dir, 'no-root')).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect((err as Error).message).toMatch(/ufoai-textures.*apt-get install ufoai-textures/);
  });

  it('rejects unknown categories', async () => {
    await expect(buildRealBenchmark(join(dir, 'x'), { ...opts(), categories: ['nope'] })).rejects.toThrow(
      /unknown real-benchmark category "nope"/,
    );
  });
});

describe('sources helpers', () => {
  it('parses DEP-5 copyright stanzas', () => {
    const m = parseDep5(
      'Format: x\n\nFiles: *\nCopyright: Team\nLicense: GPL-2+\n\nFiles:\n base/a.png\n base/b.png\nCopyright:\n Ann\n Bob\nLicense: CC-BY-SA-3.0\n',
    );
    expect(m.get('*')).toEqual({ licence: 'GPL-2+', copyright: 'Team' });
    expect(m.get('base/b.png')).toEqual({ licence: 'CC-BY-SA-3.0', copyright: 'Ann; Bob' });
  });

  it('reads stored and deflated zip entries', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zip-'));
    try {
      const files: [string, Buffer, number][] = [
        ['textures/a.txt', Buffer.from('stored entry'), 0],
        ['textures/b.txt', Buffer.from('deflated entry '.repeat(20)), 8],
      ];
      const locals: Buffer[] = [];
      const central: Buffer[] = [];
      let offset = 0;
      for (const [name, data, method] of files) {
        const body = method === 8 ? deflateRawSync(data) : data;
        const n = Buffer.from(name);
        const lh = Buffer.alloc(30);
        lh.writeUInt32LE(0x04034b50, 0);
        lh.writeUInt16LE(method, 8);
        lh.writeUInt32LE(body.length, 18);
        lh.writeUInt32LE(data.length, 22);
        lh.writeUInt16LE(n.length, 26);
        const ch = Buffer.alloc(46);
        ch.writeUInt32LE(0x02014b50, 0);
        ch.writeUInt16LE(method, 10);
        ch.writeUInt32LE(body.length, 20);
        ch.writeUInt32LE(data.length, 24);
        ch.writeUInt16LE(n.length, 28);
        ch.writeUInt32LE(offset, 42);
        locals.push(lh, n, body);
        central.push(ch, n);
        offset += 30 + n.length + body.length;
      }
      const cd = Buffer.concat(central);
      const eocd = Buffer.alloc(22);
      eocd.writeUInt32LE(0x06054b50, 0);
      eocd.writeUInt16LE(files.length, 8);
      eocd.writeUInt16LE(files.length, 10);
      eocd.writeUInt32LE(cd.length, 12);
      eocd.writeUInt32LE(offset, 16);
      const zip = join(dir, 't.pk3');
      await writeFile(zip, Buffer.concat([...locals, cd, eocd]));
      const got = await readZipEntries(zip, ['textures/b.txt', 'textures/a.txt', 'missing']);
      expect(got.get('textures/a.txt')?.toString()).toBe('stored entry');
      expect(got.get('textures/b.txt')?.toString()).toBe('deflated entry '.repeat(20));
      expect(got.has('missing')).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
