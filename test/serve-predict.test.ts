import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectInputs, predictFiles, toCsv } from '../lib/serve/batch-predict';
import { loadServedModels } from '../lib/serve/models';
import { loadDefaultScorer } from '../lib/serve/predictor';
import { makeTinyPackage, testImage, useWasm } from './support/tiny-package';

const run = promisify(execFile);
let root: string;
let pkgDir: string;
let inputDir: string;

beforeAll(async () => {
  await useWasm();
  root = await mkdtemp(join(tmpdir(), 'predict-test-'));
  pkgDir = join(root, 'package');
  await makeTinyPackage(pkgDir);
  inputDir = join(root, 'in');
  await mkdir(join(inputDir, 'sub'), { recursive: true });
  await writeFile(join(inputDir, 'a.png'), await testImage('png'));
  await writeFile(join(inputDir, 'sub', 'b.jpg'), await testImage('jpeg', { defect: true }));
  await writeFile(join(inputDir, 'corrupt.png'), (await testImage('png')).subarray(0, 70));
  await writeFile(join(inputDir, 'notes.txt'), 'not an image, and not picked up from a folder');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('batch prediction', () => {
  it('writes predictions.csv/json and overlays; corrupt files are reported by path and skipped', async () => {
    const { models } = await loadServedModels(pkgDir);
    const files = await collectInputs([inputDir]);
    expect(files.map((f) => f.name)).toEqual(['a.png', 'corrupt.png', join('sub', 'b.jpg')]);
    const outDir = join(root, 'out');
    const progress: number[] = [];
    const { rows, failures } = await predictFiles({
      model: models[0],
      files,
      outDir,
      scorer: await loadDefaultScorer(),
      overlaySize: 64,
      onProgress: (done) => progress.push(done),
    });
    expect(progress).toEqual([1, 2, 3]);
    expect(rows.map((r) => r.overlay)).toEqual([join('overlays', 'a.png'), join('overlays', 'sub', 'b.png')]);
    expect(failures).toEqual([
      {
        file: join(inputDir, 'corrupt.png'),
        code: 'CORRUPT_IMAGE',
        message: expect.stringContaining('corrupt.png'),
      },
    ]);
    const csv = await readFile(join(outDir, 'predictions.csv'), 'utf8');
    expect(csv.split('\n')[0]).toBe('file,score,normalised_score,verdict,threshold,defect_area,overlay');
    expect(csv.trim().split('\n')).toHaveLength(3);
    const json = JSON.parse(await readFile(join(outDir, 'predictions.json'), 'utf8'));
    expect(json.model).toMatchObject({ category: 'widget', runId: 'run-1' });
    expect(json.predictions).toHaveLength(2);
    expect(json.failed).toHaveLength(1);
    const overlay = await sharp(join(outDir, 'overlays', 'a.png')).metadata();
    expect([overlay.width, overlay.height]).toEqual([48, 48]);
  });

  it('CSV quotes fields with commas and quotes', () => {
    const csv = toCsv([
      {
        file: 'a,"b".png',
        score: 1,
        normalisedScore: 0.5,
        verdict: 'good',
        threshold: 1,
        defectArea: 0,
        overlay: 'o.png',
      },
    ]);
    expect(csv.split('\n')[1]).toBe('"a,""b"".png",1,0.5,good,1,0,o.png');
  });

  it('npm run predict: exits 1 listing the failed files, 0 when all succeed', async () => {
    const cli = ['--import', 'tsx', 'cli/predict.ts', '--model', pkgDir, '--backend', 'wasm'];
    const failed = await run('node', [...cli, '--input', inputDir, '--out', join(root, 'cli-out')]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain(`1 file(s) could not be scored:\n  ${join(inputDir, 'corrupt.png')}:`);
    const ok = await run('node', [...cli, '--input', join(inputDir, 'a.png'), '--out', join(root, 'cli-ok')]);
    expect(ok.stdout).toMatch(/1 scored \(\d defective, \d good\) with widget/);
    const bad = await run('node', [...cli.slice(0, 4), join(root, 'nope'), '--input', inputDir]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringContaining('not a folder') });
  });
});
