/**
 * The work dir's bound (lib/store/work-dir): least recently used mirrors go first, a mirror held by
 * a live process never goes, a hold left by a dead process does not count.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { holdMirror, pruneWorkDir } from '../lib/store/work-dir';

let work: string;
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function mirror(rel: string, ageSec: number): Promise<string> {
  const dir = join(work, rel);
  await mkdir(join(dir, 'cat', 'train'), { recursive: true });
  await writeFile(join(dir, 'cat', 'train', 'weights.bin'), Buffer.alloc(1000));
  const release = await holdMirror(dir);
  await release();
  const t = new Date(Date.now() - ageSec * 1000);
  await utimes(join(dir, '.last-used'), t, t);
  return dir;
}

it('prunes least recently used mirrors not held by a live process, down to the bound', async () => {
  work = await mkdtemp(join(tmpdir(), 'work-dir-'));
  const oldest = await mirror('fleet/runs/quick/r1', 300);
  const older = await mirror('fleet/runs/quick/r2', 200);
  const held = await mirror('fleet/runs/quick/r3', 400);
  const dead = await mirror('datasets/fleet/demo/chip', 100);
  const release = await holdMirror(held);
  // A hold whose process is gone (pid 2^22 + 1 is above Linux's pid_max default).
  await writeFile(join(dead, '.in-use', `${2 ** 22 + 1}-0`), '');

  // Under the bound: nothing goes.
  expect((await pruneWorkDir(work, 10_000)).removed).toEqual([]);
  // 4000 bytes of mirrors, bound 3000: the oldest unheld one (r1) goes; r3 is older but held.
  const first = await pruneWorkDir(work, 3000);
  expect(first.removed).toEqual([oldest]);
  expect(first.bytes).toBe(3000);
  // Bound 0: everything not held goes, the dead process's hold notwithstanding.
  const second = await pruneWorkDir(work, 0);
  expect(second.removed.sort()).toEqual([dead, older].sort());
  expect(existsSync(join(held, 'cat', 'train', 'weights.bin'))).toBe(true);
  await release();
  expect((await pruneWorkDir(work, 0)).removed).toEqual([held]);
});
