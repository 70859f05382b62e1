/**
 * Crash resume: a training PROCESS is killed with SIGKILL after its first checkpoint appears and
 * started again; it must resume from the newest valid checkpoint and end at the same epoch count,
 * with the same losses, as an uninterrupted run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { train } from '../lib/train/trainer';
import { childConfig, lossesOf, tinySplit } from './support/train-fixtures';

const CHILD = join(import.meta.dirname, 'support', 'train-child.ts');

function startChild(dir: string): {
  proc: ChildProcess;
  done: Promise<{ code: number | null; out: string; err: string }>;
} {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d) => {
    out += d;
  });
  proc.stderr?.on('data', (d) => {
    err += d;
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    proc.on('exit', (code) => resolve({ code, out, err })),
  );
  return { proc, done };
}

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

describe('resume after the training process is killed', () => {
  it('kill -9 after the first checkpoint, rerun: same epoch count and losses as an uninterrupted run', async () => {
    const cfg = childConfig();
    const ref = await train({
      config: cfg,
      train: tinySplit(16),
      val: tinySplit(4, 32, 3, 'val'),
      checkpointDir: await mkdtemp(join(tmpdir(), 'ref-')),
    });
    ref.model.dispose();

    const dir = await mkdtemp(join(tmpdir(), 'crash-'));
    const first = startChild(dir);
    const deadline = Date.now() + 90_000;
    while (!existsSync(join(dir, 'epoch-0001', 'checkpoint.json'))) {
      if (Date.now() > deadline) throw new Error('no checkpoint appeared');
      await new Promise((r) => setTimeout(r, 10));
    }
    first.proc.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.code).toBeNull(); // died by signal, did not finish
    expect(killed.out).toBe('');

    const second = await startChild(dir).done;
    expect(second.code, second.err).toBe(0);
    const res = JSON.parse(second.out.trim().split('\n').at(-1) as string) as {
      resumedFrom: string | null;
      epochsRun: number;
      history: Parameters<typeof lossesOf>[0];
    };
    expect(res.resumedFrom).toMatch(/epoch-000\d$/);
    expect(res.epochsRun).toBe(cfg.epochs);
    expect(res.history).toHaveLength(cfg.epochs);
    expect(lossesOf(res.history)).toEqual(lossesOf(ref.history));
  });
});
