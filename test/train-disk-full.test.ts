/**
 * A disk that fills up (ENOSPC, injected into the atomic writer) while a checkpoint is written:
 * training fails with a plain, retryable error (not a UserError), the newest valid checkpoint is
 * untouched (no half-written folder, no temp left), `best/` survives a failed replacement, and a
 * rerun resumes from the newest valid checkpoint and ends like an undisturbed run.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { BEST_CHECKPOINT, findLatestValidCheckpoint, verifyCheckpoint } from '../lib/train/checkpoints';
import { train } from '../lib/train/trainer';
import { isUserError } from '../lib/util/errors';
import { setInjectedFaults } from '../lib/util/faults';
import { lossesOf, tinyConfig, tinySplit } from './support/train-fixtures';

const cfg = tinyConfig({ epochs: 4, augmentation: { enabled: false } });
const data = () => ({ train: tinySplit(8), val: tinySplit(4, 32, 3, 'val') });

beforeAll(async () => {
  await selectBackend('wasm', 'train');
});

afterEach(() => setInjectedFaults(undefined));

async function failingRun(rule: string): Promise<{ dir: string; err: unknown }> {
  const dir = await mkdtemp(join(tmpdir(), 'disk-full-'));
  setInjectedFaults(rule);
  const err = await train({ config: cfg, ...data(), checkpointDir: dir }).then(
    (r) => {
      r.model.dispose();
      return undefined;
    },
    (e: unknown) => e,
  );
  setInjectedFaults('');
  return { dir, err };
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith('.'));
}

describe('disk full while checkpointing', () => {
  it('fails retryably, keeps the newest valid checkpoint intact, and resumes to the same result', async () => {
    const ref = await train({ config: cfg, ...data(), checkpointDir: await mkdtemp(join(tmpdir(), 'ref-')) });
    ref.model.dispose();

    // The weights file of the epoch-3 checkpoint hits a full disk half-way.
    const { dir, err } = await failingRun('write:ENOSPC:path=.epoch-0003.:times=1');
    expect(err).toBeInstanceOf(Error);
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(isUserError(err)).toBe(false); // the activity adapter retries it
    expect(leftovers(dir)).toEqual([]);
    const newest = await findLatestValidCheckpoint(dir, () => {});
    expect(newest).toBe(join(dir, 'epoch-0002'));
    expect(readdirSync(dir).filter((n) => n.startsWith('epoch-'))).toEqual(['epoch-0001', 'epoch-0002']);

    // The retry: same folder, no fault.
    const resumed = await train({ config: cfg, ...data(), checkpointDir: dir });
    resumed.model.dispose();
    expect(resumed.resumedFrom).toBe(join(dir, 'epoch-0002'));
    expect(lossesOf(resumed.history)).toEqual(lossesOf(ref.history));
  });

  it('a failed replacement of best/ keeps the previous best/', async () => {
    // best/ is written at epoch 1; its second save (epoch 2, if improved) fails on its first file.
    const { dir, err } = await failingRun('write:EROFS:path=.best.:after=6:times=1');
    expect((err as NodeJS.ErrnoException).code).toBe('EROFS');
    expect(leftovers(dir)).toEqual([]);
    expect(await verifyCheckpoint(join(dir, BEST_CHECKPOINT))).toBeNull();
    expect(await findLatestValidCheckpoint(dir, () => {})).toBe(join(dir, 'epoch-0001'));
  });
});
