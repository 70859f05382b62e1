import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFiles, loadTrainingConfig, parseSetOverrides } from '../lib/config/load';
import { deepMerge } from '../lib/config/merge';
import { defaultTrainingConfig } from '../lib/config/schema';
import { UserError } from '../lib/util/errors';

let tmp: string;
const cwd = process.cwd();

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cfg-test-'));
});
afterAll(async () => {
  process.chdir(cwd);
  await rm(tmp, { recursive: true, force: true });
});

/** Writes config/training.yaml and config/categories.yaml in a fresh folder; returns the config dir. */
async function configDir(name: string, training: string, categories = ''): Promise<string> {
  const dir = join(tmp, name, 'config');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'training.yaml'), training);
  if (categories) await writeFile(join(dir, 'categories.yaml'), categories);
  return dir;
}

async function configError(p: Promise<unknown>): Promise<UserError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  return err as UserError;
}

describe('config loading', () => {
  it('reports a bad value as "<file>: <path>: expected <what>, got <value>"', async () => {
    const dir = await configDir('badbatch', 'training:\n  batch_size: -3\n');
    process.chdir(join(dir, '..'));
    try {
      const err = await configError(loadTrainingConfig({ configDir: dir }));
      expect(err.code).toBe('INVALID_CONFIG');
      expect(err.message).toBe(
        'config/training.yaml: training.batch_size: expected positive integer, got -3',
      );
    } finally {
      process.chdir(cwd);
    }
  });

  it('lists every problem on its own line, with nested paths, enums and unknown keys', async () => {
    const dir = await configDir(
      'many',
      'training:\n  epochs: 0\n  optimizer: { name: sgd }\n  augmentation: { rotation: 5 }\n  model: { widths: [8, -1] }\n',
    );
    const err = await configError(loadTrainingConfig({ configDir: dir }));
    const lines = err.message.split('\n');
    expect(lines).toHaveLength(4);
    expect(err.message).toContain('training.yaml: training.epochs: expected positive integer, got 0');
    expect(err.message).toContain(
      'training.yaml: training.optimizer.name: expected one of adam, adamw, got "sgd"',
    );
    expect(err.message).toMatch(
      /training\.yaml: training\.augmentation\.rotation: unknown key \(known keys: enabled, rotation_limit/,
    );
    expect(err.message).toContain(
      'training.yaml: training.model.widths[1]: expected positive integer, got -1',
    );
  });

  it('rejects unknown top-level keys and names YAML syntax errors by line and column', async () => {
    const dir = await configDir('toplevel', 'trainig:\n  epochs: 3\n');
    expect((await configError(loadTrainingConfig({ configDir: dir }))).message).toContain(
      'training.yaml: trainig: unknown key',
    );
    const bad = await configDir('syntax', 'training:\n  epochs: [1, 2\n  batch_size: 3\n');
    const err = await configError(loadTrainingConfig({ configDir: bad }));
    expect(err.code).toBe('INVALID_CONFIG');
    expect(err.message).toMatch(/training\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('attributes categories.yaml problems to the category', async () => {
    const dir = await configDir(
      'cats',
      'training: {}\n',
      'categories:\n  transistor:\n    augmentation: { rotation_limit: 400 }\n  ../evil: {}\n',
    );
    const err = await configError(loadConfigFiles(dir));
    expect(err.message).toContain(
      'categories.yaml: categories.transistor.augmentation.rotation_limit: expected number between 0 and 180, got 400',
    );
    expect(err.message).toContain('categories.yaml: categories.../evil: invalid category name');
  });

  it('merges defaults < training.yaml < categories.yaml < pipeline < CLI', async () => {
    const dir = await configDir(
      'merge',
      'training:\n  epochs: 50\n  batch_size: 16\n  optimizer: { lr: 0.001 }\n',
      'categories:\n  screw:\n    epochs: 20\n    image_size: 96\n    augmentation: { hflip: false }\n',
    );
    const load = (pipelineTraining?: unknown, overrides?: object) =>
      loadTrainingConfig({
        configDir: dir,
        category: 'screw',
        pipelineTraining,
        pipelineFile: 'p.yaml',
        overrides,
      });
    const base = await load();
    expect(base.epochs).toBe(20);
    expect(base.batch_size).toBe(16);
    expect(base.image_size).toBe(96);
    expect(base.optimizer).toEqual({ name: 'adam', lr: 0.001, weight_decay: 0 });
    expect(base.augmentation.hflip).toBe(false);
    expect(base.augmentation.rotation_limit).toBe(30);
    const withPipeline = await load({ epochs: 10, image_size: 64 });
    expect([withPipeline.epochs, withPipeline.image_size, withPipeline.batch_size]).toEqual([10, 64, 16]);
    const withCli = await load({ epochs: 10 }, { epochs: 5, augmentation: { noise_factor: 0 } });
    expect([withCli.epochs, withCli.augmentation.noise_factor, withCli.augmentation.hflip]).toEqual([
      5,
      0,
      false,
    ]);
    const other = await loadTrainingConfig({ configDir: dir, category: 'bottle' });
    expect([other.epochs, other.image_size]).toEqual([50, 128]);
  });

  it('names the pipeline file and the command line as sources', async () => {
    const dir = await configDir('sources', 'training: {}\n');
    const err = await configError(
      loadTrainingConfig({
        configDir: dir,
        pipelineTraining: { epochs: 'x' },
        pipelineFile: '/x/quick.yaml',
      }),
    );
    expect(err.message).toBe('/x/quick.yaml: training.epochs: expected positive integer, got "x"');
    const cli = await configError(
      loadTrainingConfig({ configDir: dir, overrides: parseSetOverrides(['batch_size=0']) }),
    );
    expect(cli.message).toBe('command line: batch_size: expected positive integer, got 0');
  });

  it('ships valid config files with the original defaults and orientation-sensitive overrides', async () => {
    const files = await loadConfigFiles();
    expect(files.training).toMatchObject({
      image_size: 128,
      batch_size: 32,
      epochs: 100,
      mixed_precision: 'auto',
    });
    const t = await loadTrainingConfig({ category: 'transistor' });
    expect(t.augmentation).toMatchObject({ rotation_limit: 0, hflip: false });
    expect(t.loss).toMatchObject({ mse: 1, ssim: 0.5, perceptual: 0.1, edge: 0.2 });
    expect(t.optimizer.lr).toBe(1e-4);
    expect((await loadTrainingConfig({ category: 'bottle' })).augmentation).toMatchObject({
      enabled: true,
      rotation_limit: 30,
      noise_factor: 0.05,
      brightness_limit: 0.2,
    });
  });

  it('parses --set overrides and merges deeply, replacing arrays', () => {
    expect(
      parseSetOverrides(['epochs=3', 'training.augmentation.enabled=false', 'model.widths=[8,16]']),
    ).toEqual({
      epochs: 3,
      augmentation: { enabled: false },
      model: { widths: [8, 16] },
    });
    expect(() => parseSetOverrides(['epochs'])).toThrow(/expected key=value/);
    const merged = deepMerge(defaultTrainingConfig(), { model: { widths: [8] } });
    expect(merged.model).toEqual({ widths: [8] });
  });
});
