/**
 * `serve --models s3://...` and `predict --model s3://...`: model packages in a real S3 server
 * (SeaweedFS) are mirrored through the verified cache and served; only the newest calibrated
 * package per category is downloaded; a tampered object is refused.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelPackage } from '../lib/package/package';
import { mirrorRemoteModels, resolveModelsSource } from '../lib/serve/remote-models';
import { startServer } from '../lib/serve/start';
import { StoreError } from '../lib/store';
import { startS3Server, type TestS3Server } from './support/s3-server';
import { makeTinyPackage, useWasm } from './support/tiny-package';

const repo = join(import.meta.dirname, '..');
const storeCli = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(repo, 'cli', 'store.ts'), ...args], {
    cwd: repo,
    encoding: 'utf8',
    env: process.env,
    timeout: 60_000,
  });

let s3: TestS3Server;
let root: string;
const savedEnv = { ...process.env };

beforeAll(async () => {
  await useWasm();
  root = await mkdtemp(join(tmpdir(), 'store-serve-test-'));
  s3 = await startS3Server();
  await s3.createBucket('models');
  const runs = join(root, 'runs');
  const pkg = (run: string, category: string) => join(runs, 'demo', run, category, 'checkpoint', 'package');
  await makeTinyPackage(pkg('r1', 'widget'), { runId: 'r1', pipeline: 'demo' });
  await makeTinyPackage(pkg('r2', 'gadget'), { runId: 'r2', pipeline: 'demo', category: 'gadget' });
  await makeTinyPackage(pkg('r3', 'widget'), { runId: 'r3', pipeline: 'demo' });
  await makeTinyPackage(pkg('r4', 'widget'), { runId: 'r4', pipeline: 'demo', calibration: null });
  // the temp model folders makeTinyPackage leaves beside each package are not part of a run
  for (const run of ['r1', 'r2', 'r3', 'r4'])
    for (const cat of ['widget', 'gadget'])
      await rm(join(runs, 'demo', run, cat, 'checkpoint', 'package.model'), { recursive: true, force: true });
  await writeFile(join(runs, 'demo', 'r3', 'widget', 'notes.txt'), 'not part of a package');
  Object.assign(process.env, s3.env(), { ANOMALY_SPOTTER_CACHE_DIR: join(root, 'cache') });
  // uploaded with the CLI (`npm run store -- publish <dir> <url>`), settings from the AWS_* variables
  const r = storeCli(['publish', runs, 's3://models/runs']);
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/published \d+ files \(\d+ bytes\) to s3:\/\/models\/runs/);
});

afterAll(async () => {
  process.env = savedEnv;
  await s3?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('model packages from S3', () => {
  it('mirrors only the newest calibrated package per category, through the cache', async () => {
    const first = await mirrorRemoteModels('s3://models/runs');
    expect(first.packages).toEqual([
      'demo/r2/gadget/checkpoint/package',
      'demo/r3/widget/checkpoint/package',
    ]);
    expect(first.skipped.map((s) => s.key).sort()).toEqual([
      'demo/r1/widget/checkpoint/package',
      'demo/r4/widget/checkpoint/package',
    ]);
    expect(first.skipped.find((s) => s.key.includes('r4'))?.reason).toMatch(/uncalibrated/);
    expect(readdirSync(join(first.localPath, 'demo')).sort()).toEqual(['r2', 'r3']); // r1, r4 not downloaded
    const { misses, hits } = first.cache.stats();
    expect(misses).toBeGreaterThan(0); // identical files of the two packages are fetched once (hits)

    const again = await mirrorRemoteModels('s3://models/runs');
    expect(again.localPath).toBe(first.localPath);
    expect(again.cache.stats()).toMatchObject({ misses: 0, hits: hits + misses });
  });

  it('npm run serve -- --models s3://bucket/prefix serves them', async () => {
    const server = await startServer({ models: 's3://models/runs', port: 0, logger: false });
    try {
      expect(server.models.map((m) => `${m.category}:${m.pkg.metadata.runId}`).sort()).toEqual([
        'gadget:r2',
        'widget:r3',
      ]);
      const res = await fetch(`${server.url}/v1/models`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { models: { category: string }[] };
      expect(body.models.map((m) => m.category).sort()).toEqual(['gadget', 'widget']);
    } finally {
      await server.app.close();
    }
  });

  it('predict --model s3://.../package loads one package', async () => {
    const dir = await resolveModelsSource('s3://models/runs/demo/r2/gadget/checkpoint/package');
    const pkg = await loadModelPackage(dir);
    expect(pkg.metadata).toMatchObject({ category: 'gadget', runId: 'r2' });
    pkg.model.dispose();
    expect(await resolveModelsSource(join(root, 'runs'))).toBe(join(root, 'runs')); // local paths as is
  });

  it('npm run store -- ls / fetch: lists and fetches a published folder; errors exit 2', () => {
    const ls = storeCli(['ls', 's3://models/runs', 'demo/r2/']);
    expect(ls.status, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^\s+\d+ {2}demo\/r2\/gadget\/checkpoint\/package\/manifest\.json$/m);
    const dest = join(root, 'fetched');
    const fetched = storeCli(['fetch', 's3://models/runs', dest]);
    expect(fetched.status, fetched.stderr).toBe(0);
    expect(readdirSync(join(dest, 'demo')).sort()).toEqual(['r1', 'r2', 'r3', 'r4']);
    const missing = storeCli(['fetch', 's3://no-such-bucket/x', join(root, 'nope')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/bucket 'no-such-bucket' does not exist/);
  });

  it('refuses a package whose object was tampered with in the bucket', async () => {
    const key = 'runs/demo/r2/gadget/checkpoint/package/metadata.json';
    // (a fresh cache: a cached good copy would be served by its hash without asking the bucket)
    await s3.client.send(new PutObjectCommand({ Bucket: 'models', Key: key, Body: '{"category":"gadget"}' }));
    const cacheDir = join(root, 'fresh-cache');
    let err: unknown;
    try {
      await mirrorRemoteModels('s3://models/runs/demo/r2/gadget/checkpoint/package', { cacheDir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('CHECKSUM_MISMATCH');
    expect((err as StoreError).message).toContain(`s3://models/${key}`);
    expect(await readdir(join(cacheDir, 'mirror')).catch(() => [])).toEqual([]); // no half mirror
  });

  it('an empty prefix says what it expected', async () => {
    await expect(mirrorRemoteModels('s3://models/nothing-here')).rejects.toThrow(/no model packages found/);
  });
});
