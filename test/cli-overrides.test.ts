/**
 * `--set key=value` training overrides: parsing, merging with the named flags (--epochs, ...), the
 * plan they produce, and the one-line errors (naming the item / key / value) the pipeline CLI prints.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainingOverridesFromFlags } from '../lib/config/cli-overrides';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import { UserError } from '../lib/util/errors';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-set-'));
  mkdirSync(join(dir, 'data', 'bottle', 'train', 'good'), { recursive: true });
  writeFileSync(
    join(dir, 'p.yaml'),
    [
      'name: settest',
      'dataset: { root: data, categories: all }',
      'training: { epochs: 7, model: { widths: [8, 16, 32] } }',
      'steps:',
      '  - { name: preprocess, activity: preprocess }',
      '',
    ].join('\n'),
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function userErrorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error('expected a UserError');
}

describe('--set overrides', () => {
  it('parses dotted keys and YAML values; named flags win over --set of the same key', () => {
    expect(trainingOverridesFromFlags({})).toBeUndefined();
    expect(
      trainingOverridesFromFlags({
        set: ['epochs=3', 'augmentation.enabled=false', 'model.widths=[4, 8]', 'training.optimizer.lr=0.01'],
      }),
    ).toEqual({
      epochs: 3,
      augmentation: { enabled: false },
      model: { widths: [4, 8] },
      optimizer: { lr: 0.01 },
    });
    // Later --set of the same key wins; --epochs / --lr win over --set, sibling keys stay.
    expect(
      trainingOverridesFromFlags({
        set: ['epochs=3', 'epochs=4', 'optimizer.name=adamw', 'optimizer.lr=0.5'],
        epochs: 9,
        lr: 0.001,
      }),
    ).toEqual({ epochs: 9, optimizer: { name: 'adamw', lr: 0.001 } });
  });

  it('merges over the pipeline training block in the run plan (lists replaced whole)', async () => {
    const plan = await buildRunPlan({
      pipelinePath: join(dir, 'p.yaml'),
      runsRoot: join(dir, 'runs'),
      overrides: trainingOverridesFromFlags({ set: ['model.widths=[4]', 'batch_size=2'] }),
    });
    const cfg = plan.categories[0].config;
    expect(cfg.model.widths).toEqual([4]);
    expect(cfg.batch_size).toBe(2);
    expect(cfg.epochs).toBe(7);
  });

  it('names the item, key and value at fault', () => {
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['epochs'] })).message).toBe(
      '--set epochs: expected key=value, e.g. epochs=3',
    );
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['=3'] })).message).toMatch(/^--set =3: /);
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['optimizer..lr=1'] })).message).toBe(
      '--set optimizer..lr=1: invalid key "optimizer..lr": expected dotted setting names like optimizer.lr',
    );
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['__proto__.x=1'] })).message).toMatch(
      /invalid key "__proto__.x"/,
    );
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['model.widths=[8,'] })).message).toMatch(
      /^--set model\.widths=\[8,: the value is not valid YAML \(/,
    );
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['epoch=3'] })).message).toMatch(
      /^--set: epoch: unknown key \(known keys: image_size, batch_size, epochs,/,
    );
    expect(userErrorOf(() => trainingOverridesFromFlags({ set: ['epochs=-3'] })).message).toBe(
      '--set: epochs: expected positive integer, got -3',
    );
    expect(
      userErrorOf(() => trainingOverridesFromFlags({ set: ['augmentation.enabled=maybe'] })).message,
    ).toBe('--set: augmentation.enabled: expected true or false, got "maybe"');
  });

  it('the pipeline CLI prints a bad --set as one line and exits 2', async () => {
    const res = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'client.ts', '--pipeline', join(dir, 'p.yaml'), '--set', 'model.widths=[8,x]'],
        // No server is needed: the plan (and so the overrides) is checked before connecting.
        { env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    expect(res.code).toBe(2);
    expect(res.stderr.trim()).toBe('error: --set: model.widths[1]: expected positive integer, got "x"');
  });
});
