/**
 * A full disk while the real train step writes a checkpoint, through `npm run pipeline` in
 * embedded mode (real dev server, worker processes, steps): the ENOSPC (injected into the training
 * worker's atomic writer through ANOMALY_SPOTTER_INJECT_FAULTS) fails that attempt retryably, the
 * retry resumes from the newest valid checkpoint, and the run completes.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeDataset } from '../lib/data/synth';
import { verifyCheckpoint } from '../lib/train/checkpoints';
import { INJECT_FAULTS_ENV } from '../lib/util/faults';
import {
  type CliRun,
  freeEmbeddedPort,
  killQuietly,
  pidsMentioning,
  startCli,
  writeTinyPipeline,
} from './support/cli-embedded';

const EPOCHS = 5;
let dir: string;
let stateDir: string;
let port: number;
const started: CliRun[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-cli-disk-full-'));
  stateDir = join(dir, 'state');
  port = await freeEmbeddedPort();
  await synthesizeDataset(join(dir, 'data'), {
    size: 32,
    categories: ['chip'],
    trainGood: 12,
    testGood: 2,
    perDefect: 1,
  });
  writeTinyPipeline(dir, 'diskfull', { epochs: EPOCHS });
  // Two training attempts only, so that a disk that stays full fails the category soon.
  writeTinyPipeline(dir, 'stillfull', { epochs: EPOCHS }, (pipeline) => {
    const steps = pipeline.steps as Array<Record<string, unknown>>;
    const train = steps.find((s) => s.name === 'train');
    if (train) train.retry = { maximum_attempts: 2, initial_interval: '1s' };
  });
});

afterAll(() => {
  for (const run of started) if (run.child.pid) killQuietly(-run.child.pid);
  if (stateDir) for (const pid of pidsMentioning(join(stateDir, 'temporal.db'))) killQuietly(pid);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface LogLine {
  msg: string;
  error?: string;
  retryable?: boolean;
}

function attemptLog(stepDir: string, n: number): LogLine[] {
  const file = join(stepDir, 'logs', `attempt-${n}.log`);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine);
}

function pipelineArgs(name: string, runId: string): string[] {
  return [
    '--pipeline',
    join(dir, `${name}.yaml`),
    '--data-root',
    join(dir, 'data'),
    '--runs-root',
    join(dir, 'runs'),
    '--run-id',
    runId,
    '--train-slots',
    '1',
    '--no-progress',
    // Both runs share data and config: the step cache would let the second skip the faulty step.
    '--no-cache',
  ];
}

describe('disk full while checkpointing (real CLI, server, workers and steps)', () => {
  it('fails the training attempt retryably; the retry resumes from the newest valid checkpoint and the run completes', async () => {
    const cli = startCli(pipelineArgs('diskfull', 'df'), {
      stateDir,
      port,
      env: { [INJECT_FAULTS_ENV]: 'write:ENOSPC:path=checkpoints/.epoch-0003.:times=1' },
    });
    started.push(cli);
    const done = await cli.exited;
    expect({ ...done, out: cli.stdout(), err: cli.stderr() }).toMatchObject({ code: 0 });
    const stepDir = join(dir, 'runs', 'diskfull', 'df', 'chip', 'train');
    const failed = attemptLog(stepDir, 1).find((l) => l.msg === 'attempt failed');
    expect(failed?.error).toMatch(/ENOSPC: no space left on device/);
    expect(failed?.retryable).toBe(true);
    expect(attemptLog(stepDir, 2).some((l) => l.msg === 'attempt finished')).toBe(true);
    const metadata = JSON.parse(readFileSync(join(stepDir, 'metadata.json'), 'utf8')) as {
      resumedFrom: string;
    };
    expect(metadata.resumedFrom).toBe(join('chip', 'train', 'checkpoints', 'epoch-0002'));
    const history = JSON.parse(readFileSync(join(stepDir, 'history.json'), 'utf8')) as Array<{
      epoch: number;
    }>;
    expect(history.map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5]);
    const ckpts = join(stepDir, 'checkpoints');
    expect(readdirSync(ckpts).filter((n) => n.startsWith('.'))).toEqual([]);
    for (const name of readdirSync(ckpts)) expect(await verifyCheckpoint(join(ckpts, name))).toBeNull();
  });

  it('a disk that stays full fails the category with a sentence naming it and the resume command; resume then finishes', async () => {
    // epoch-0001 is written (6 files), every later checkpoint write fails.
    const full = startCli(pipelineArgs('stillfull', 'df2'), {
      stateDir,
      port,
      env: { [INJECT_FAULTS_ENV]: 'write:ENOSPC:path=checkpoints/.epoch-:after=6:times=100000' },
    });
    started.push(full);
    const done = await full.exited;
    expect({ ...done, out: full.stdout() }).toMatchObject({ code: 1 });
    expect(full.stderr()).not.toMatch(/^\s+at /m);
    expect(full.stderr()).toContain(
      'chip: step train could not write its files: the disk is full (ENOSPC). Free some space or fix the permissions, then continue with: npm run pipeline -- resume df2',
    );
    expect(full.stdout()).toContain('Continue with: npm run pipeline -- resume df2');
    const ckpts = join(dir, 'runs', 'stillfull', 'df2', 'chip', 'train', 'checkpoints');
    expect(readdirSync(ckpts).filter((n) => n.startsWith('epoch-'))).toEqual(['epoch-0001']);
    expect(await verifyCheckpoint(join(ckpts, 'epoch-0001'))).toBeNull();

    const resumed = startCli(['resume', 'df2', '--train-slots', '1', '--no-progress'], { stateDir, port });
    started.push(resumed);
    expect({ ...(await resumed.exited), err: resumed.stderr() }).toMatchObject({ code: 0 });
    const metadata = JSON.parse(
      readFileSync(join(dir, 'runs', 'stillfull', 'df2', 'chip', 'train', 'metadata.json'), 'utf8'),
    ) as { resumedFrom: string };
    expect(metadata.resumedFrom).toBe(join('chip', 'train', 'checkpoints', 'epoch-0001'));
  });
});
