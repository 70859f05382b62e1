/**
 * PatchCore feature variants, A/B on a run's own tensor caches: `npm run bench:features -- --run <run dir>
 * [--backbone efficientnet-lite2[+efficientnet-lite0]] [--strides 4,8,16] [--variants raw,stagebal,zscore]
 * [--flips h,v,hv] [--category a b]`. Uses the full bank (every training patch, no coreset) so that only
 * the features differ; prints image AUROC and patch-level AUROC (a patch is anomalous when any mask pixel
 * falls in it) per category and their means. The numbers choose between feature recipes (docs/RESULTS.md);
 * the pipeline's own metrics come from bench:detect.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { patchcoreSchema } from '../lib/config/schema';
import { type CachedSplit, readCachedSplit } from '../lib/data/tensor-cache';
import { auroc, rankedCounts } from '../lib/eval/metrics';
import { type ResolvedBackbone, resolveBackbone } from '../lib/models/patchcore/backbone';
import { extractPatches } from '../lib/models/patchcore/fit';
import { buildFeatureModel } from '../lib/models/patchcore/graphs';
import { GraphBuilder } from '../lib/onnx/graph';
import { encodeModel, int, ints, valueInfo } from '../lib/onnx/proto';
import { positiveInt } from '../lib/util/cli-args';

const program = new Command()
  .requiredOption('--run <dir>', 'a run folder whose <category>/preprocess tensor caches are used')
  .option('--backbone <names>', 'backbones, + to concatenate their features', 'efficientnet-lite2')
  .option('--strides <list>', 'feature strides', '4,8,16')
  .option('--variants <list>', 'raw | stagebal (each stage to unit mean norm) | zscore (per channel)', 'raw')
  .option('--flips <list>', 'add flipped copies of the training images to the bank: h, v, hv', '')
  .option('--category <names...>', 'categories (default: every one in the run)')
  .option('--reweight', "also the paper's image-score reweighting (eq. 7, 9 neighbours)")
  .option(
    '--pool <list>',
    'also image scores from the max of the n x n mean of the patch-distance grid (e.g. 2,3; 1: PatchCore)',
    '',
  )
  .option(
    '--k <n>',
    'patch score: mean squared distance to the k nearest bank patches (1: PatchCore)',
    positiveInt,
    1,
  )
  .parse();
const o = program.opts<{
  run: string;
  backbone: string;
  strides: string;
  variants: string;
  flips: string;
  category?: string[];
  k: number;
  reweight?: boolean;
  pool: string;
}>();
const pools = o.pool.split(',').filter(Boolean).map(Number);

/** Max over the grid of the mean of each n x n window (windows clipped at the borders). */
function pooledMax(d: Float32Array, grid: number, n: number): number {
  let best = Number.NEGATIVE_INFINITY;
  const r0 = Math.floor((n - 1) / 2);
  for (let y = 0; y < grid; y++)
    for (let x = 0; x < grid; x++) {
      let t = 0;
      let c = 0;
      for (let yy = y - r0; yy < y - r0 + n; yy++)
        for (let xx = x - r0; xx < x - r0 + n; xx++)
          if (yy >= 0 && yy < grid && xx >= 0 && xx < grid) {
            t += d[yy * grid + xx];
            c++;
          }
      best = Math.max(best, t / c);
    }
  return best;
}
const strides = o.strides.split(',').map(Number);
const backbones: ResolvedBackbone[] = [];
for (const name of o.backbone.split('+'))
  backbones.push(await resolveBackbone(patchcoreSchema.parse({ backbone: name })));

// Nearest-neighbour distance of every query row to the bank: one MatMul per chunk on ONNX Runtime.
const g = new GraphBuilder();
const fsq = g.op('ReduceSumSquare', ['q'], [ints('axes', [1]), int('keepdims', 1)]);
const d2 = g.op('Add', [g.op('Add', [g.op('MatMul', ['q', 'bt']), fsq]), 'bsq']);
// k = 1: ReduceMin (PatchCore); k > 1: the mean of the k smallest squared distances.
if (o.k === 1) g.op('ReduceMin', [d2], [ints('axes', [1]), int('keepdims', 0)], 'out');
else {
  // TopK has two outputs (values, indices): a node written out, as GraphBuilder.op makes one.
  g.nodes.push({
    op_type: 'TopK',
    name: 'topk',
    input: [d2, g.ints64([o.k])],
    output: ['topk:values', 'topk:indices'],
    attribute: [int('largest', 0), int('axis', 1)],
  });
  g.op('ReduceMean', ['topk:values'], [ints('axes', [1]), int('keepdims', 0)], 'out');
}
const knn = await ort.InferenceSession.create(
  encodeModel({
    name: 'knn',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo('q', ['P', 'D']), valueInfo('bt', ['D', 'M']), valueInfo('bsq', [1, 'M'])],
    outputs: [valueInfo('out', ['P'])],
  }),
  { intraOpNumThreads: 2 },
);

async function nearest(test: Float32Array, bank: Float32Array, dim: number): Promise<Float32Array> {
  const m = bank.length / dim;
  const p = test.length / dim;
  const bt = new Float32Array(dim * m);
  const bsq = new Float32Array(m);
  for (let j = 0; j < m; j++)
    for (let d = 0; d < dim; d++) {
      const v = bank[j * dim + d];
      bt[d * m + j] = -2 * v;
      bsq[j] += v * v;
    }
  const btT = new ort.Tensor('float32', bt, [dim, m]);
  const bsqT = new ort.Tensor('float32', bsq, [1, m]);
  const out = new Float32Array(p);
  for (let s = 0; s < p; s += 1024) {
    const n = Math.min(1024, p - s);
    const r = await knn.run({
      q: new ort.Tensor('float32', test.slice(s * dim, (s + n) * dim), [n, dim]),
      bt: btT,
      bsq: bsqT,
    });
    const d = r.out.data as Float32Array;
    for (let i = 0; i < n; i++) out[s + i] = Math.sqrt(Math.max(0, d[i]));
  }
  return out;
}

function withFlips(split: CachedSplit, flips: string[]): CachedSplit {
  const s = split.size;
  const px = s * s * 3;
  const images = new Uint8Array(split.count * px * (1 + flips.length));
  images.set(split.images);
  flips.forEach((f, fi) => {
    for (let i = 0; i < split.count; i++) {
      const src = split.images.subarray(i * px, (i + 1) * px);
      const dst = images.subarray(((fi + 1) * split.count + i) * px);
      for (let y = 0; y < s; y++)
        for (let x = 0; x < s; x++) {
          const sx = f.includes('h') ? s - 1 - x : x;
          const sy = f.includes('v') ? s - 1 - y : y;
          for (let c = 0; c < 3; c++) dst[(y * s + x) * 3 + c] = src[(sy * s + sx) * 3 + c];
        }
    }
  });
  return { ...split, count: split.count * (1 + flips.length), images };
}

/** Per-patch rows of every backbone's features, concatenated; and the channel count of each stage. */
async function features(
  split: CachedSplit,
): Promise<{ rows: Float32Array; dim: number; blocks: number[]; grid: number }> {
  const parts: { rows: Float32Array; dim: number }[] = [];
  const blocks: number[] = [];
  let grid = 0;
  for (const b of backbones) {
    const graph = buildFeatureModel({
      imageSize: split.size,
      backbone: b.append,
      strides,
      neighbourhood: 3,
      patchStride: 8,
    });
    parts.push({ rows: await extractPatches(split, graph, { threads: 2 }), dim: graph.dim });
    for (const out of b.append(
      new GraphBuilder(),
      'x',
      [...strides].sort((a, c) => a - c),
    ))
      blocks.push(out.channels);
    grid = graph.grid;
  }
  const dim = parts.reduce((n, p) => n + p.dim, 0);
  const count = parts[0].rows.length / parts[0].dim;
  const rows = new Float32Array(count * dim);
  for (let r = 0; r < count; r++) {
    let off = 0;
    for (const p of parts) {
      rows.set(p.rows.subarray(r * p.dim, (r + 1) * p.dim), r * dim + off);
      off += p.dim;
    }
  }
  return { rows, dim, blocks, grid };
}

const categories =
  o.category ??
  (await readdir(o.run, { withFileTypes: true }))
    .filter((d) => d.isDirectory() && d.name !== 'summary')
    .map((d) => d.name);
const variants = o.variants.split(',');
const flips = o.flips.split(',').filter(Boolean);
const sums = new Map<string, [number, number]>();
for (const c of categories) {
  const dir = join(o.run, c, 'preprocess');
  const train = withFlips(await readCachedSplit(dir, 'train'), flips);
  const test = await readCachedSplit(dir, 'test');
  const tr = await features(train);
  const te = await features(test);
  const { dim, blocks, grid } = tr;
  const labels = test.records.map((r) => r.label);
  const s = test.size;
  const ps = s / grid;
  const patchLabels: number[] = [];
  for (let i = 0; i < test.count; i++)
    for (let y = 0; y < grid; y++)
      for (let x = 0; x < grid; x++) {
        let hit = 0;
        for (let yy = 0; yy < ps && !hit; yy++)
          for (let xx = 0; xx < ps && !hit; xx++)
            hit = test.masks?.[i * s * s + (y * ps + yy) * s + x * ps + xx] ?? 0;
        patchLabels.push(hit ? 1 : 0);
      }
  const n = tr.rows.length / dim;
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  for (let p = 0; p < n; p++)
    for (let d = 0; d < dim; d++) {
      mean[d] += tr.rows[p * dim + d];
      sq[d] += tr.rows[p * dim + d] ** 2;
    }
  const std = mean.map((m, d) => Math.sqrt(Math.max(1e-8, sq[d] / n - (m / n) ** 2)));
  for (let d = 0; d < dim; d++) mean[d] /= n;
  const stageNorm: number[] = [];
  {
    let off = 0;
    for (const b of blocks) {
      let t = 0;
      for (let d = off; d < off + b; d++) t += sq[d];
      stageNorm.push(Math.sqrt(t / n));
      off += b;
    }
  }
  const transform = (v: string, f: Float32Array): Float32Array => {
    if (v === 'raw') return f;
    const out = new Float32Array(f.length);
    const scale = new Float32Array(dim);
    const shift = new Float32Array(dim);
    let off = 0;
    blocks.forEach((b, bi) => {
      for (let d = off; d < off + b; d++) {
        scale[d] = v === 'zscore' ? 1 / std[d] : 1 / stageNorm[bi];
        shift[d] = v === 'zscore' ? mean[d] : 0;
      }
      off += b;
    });
    for (let i = 0; i < f.length; i++) out[i] = (f[i] - shift[i % dim]) * scale[i % dim];
    return out;
  };
  const row: string[] = [];
  for (const v of variants) {
    const d = await nearest(transform(v, te.rows), transform(v, tr.rows), dim);
    const image = Array.from({ length: test.count }, (_, i) =>
      Math.max(...d.subarray(i * grid * grid, (i + 1) * grid * grid)),
    );
    const a = auroc(rankedCounts(image, labels)).value ?? Number.NaN;
    const pa = auroc(rankedCounts(Array.from(d), patchLabels)).value ?? Number.NaN;
    const t = sums.get(v) ?? [0, 0];
    sums.set(v, [t[0] + a, t[1] + pa]);
    row.push(`${v} ${a.toFixed(3)} / ${pa.toFixed(3)}`);
    for (const n of pools) {
      const pooled = Array.from({ length: test.count }, (_, i) =>
        pooledMax(d.subarray(i * grid * grid, (i + 1) * grid * grid), grid, n),
      );
      const pa2 = auroc(rankedCounts(pooled, labels)).value ?? Number.NaN;
      const t2 = sums.get(`${v}+pool${n}`) ?? [0, 0];
      sums.set(`${v}+pool${n}`, [t2[0] + pa2, t2[1] + pa]);
      row.push(`${v}+pool${n} ${pa2.toFixed(3)}`);
    }
    if (o.reweight) {
      // PatchCore's image-score reweighting (the paper's eq. 7, b = 9): the most anomalous patch's
      // score times 1 - softmax over its distances to its nearest bank patch m* and m*'s neighbours.
      const bank = transform(v, tr.rows);
      const q = transform(v, te.rows);
      const dist = (a: Float32Array, ai: number, b: Float32Array, bi: number) => {
        let t = 0;
        for (let k = 0; k < dim; k++) t += (a[ai * dim + k] - b[bi * dim + k]) ** 2;
        return Math.sqrt(t);
      };
      const reweighted = image.map((score, i) => {
        let p = i * grid * grid;
        for (let j = p; j < (i + 1) * grid * grid; j++) if (d[j] > d[p]) p = j;
        let star = 0;
        let best = Number.POSITIVE_INFINITY;
        for (let m = 0; m < n; m++) {
          const x = dist(q, p, bank, m);
          if (x < best) [best, star] = [x, m];
        }
        const near = Array.from({ length: n }, (_, m) => [dist(bank, star, bank, m), m])
          .sort((x, y) => x[0] - y[0])
          .slice(0, 9)
          .map(([, m]) => dist(q, p, bank, m));
        const top = Math.max(...near);
        const z = near.reduce((acc, x) => acc + Math.exp(x - top), 0);
        return score * (1 - Math.exp(near[0] - top) / z);
      });
      const ra = auroc(rankedCounts(reweighted, labels)).value ?? Number.NaN;
      const tr2 = sums.get(`${v}+reweight`) ?? [0, 0];
      sums.set(`${v}+reweight`, [tr2[0] + ra, tr2[1] + pa]);
      row.push(`${v}+reweight ${ra.toFixed(3)}`);
    }
  }
  console.log(`${c}: ${row.join('; ')}  (image AUROC / patch AUROC)`);
}
console.log(
  `mean of ${categories.length} (${o.backbone}, strides ${strides.join(',')}${flips.length ? `, flips ${flips.join(',')}` : ''}): ` +
    [...sums]
      .map(
        ([v, [a, p]]) => `${v} ${(a / categories.length).toFixed(3)} / ${(p / categories.length).toFixed(3)}`,
      )
      .join('; '),
);
