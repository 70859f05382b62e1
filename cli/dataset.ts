/**
 * Dataset tools.
 *   npm run dataset -- synth --out data/synth [--size 128] [--seed 0]
 *   npm run dataset -- real --out data/realbench [--size 256] [--train 60] [--test-good 15] [--per-defect 8]
 *       [--seed 1] [--categories concrete,metal] [--source-dir <folder>]
 *   npm run dataset -- check <dir> [--no-decode]
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { defaultTrainingConfig } from '../lib/config/schema';
import { checkDataset, formatCheckTable } from '../lib/data/check';
import { dirSource, REAL_CATEGORIES } from '../lib/data/real-sources';
import { buildRealBenchmark } from '../lib/data/realbench';
import { REALISTIC_DEFECT_KINDS, type RealisticDefectKind } from '../lib/data/realistic-defects';
import { SYNTH_CATEGORIES, synthesizeDataset } from '../lib/data/synth';
import { describeError, isUserError, UserError } from '../lib/util/errors';

function intArg(min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`expected an integer >= ${min}, got ${v}`);
    return n;
  };
}

function fractionArg(v: string): number {
  const n = Number(v);
  if (!(n > 0 && n < 1))
    throw new InvalidArgumentError(`expected a number between 0 and 1 (exclusive), got ${v}`);
  return n;
}

const defaults = defaultTrainingConfig();
const program = new Command('dataset').description(
  'Synthetic demo data and dataset checks (MVTec AD layout)',
);

program
  .command('synth')
  .description(
    `write a deterministic synthetic dataset (categories: ${Object.keys(SYNTH_CATEGORIES).join(', ')})`,
  )
  .requiredOption('--out <dir>', 'output folder (must not exist)')
  .option('--size <px>', 'image size', intArg(16), 128)
  .option('--seed <n>', 'random seed', intArg(0), 0)
  .option('--train-good <n>', 'good training images per category', intArg(1), 30)
  .option('--test-good <n>', 'good test images per category', intArg(0), 8)
  .option('--per-defect <n>', 'test images per defect type', intArg(0), 4)
  .option('--categories <list>', 'comma-separated subset', (v: string) => v.split(',').filter(Boolean))
  .action(
    async (o: {
      out: string;
      size: number;
      seed: number;
      trainGood: number;
      testGood: number;
      perDefect: number;
      categories?: string[];
    }) => {
      const out = resolve(o.out);
      const written = await synthesizeDataset(out, o);
      if (!written)
        throw new UserError(
          'INVALID_ARGUMENT',
          `--out ${out} already exists; choose another folder or delete it`,
        );
      console.log(`wrote synthetic dataset to ${out}`);
    },
  );

program
  .command('real')
  .description(
    `write the real-photo benchmark: crops of texture photographs from the Debian package ufoai-textures with subtle defects (${REALISTIC_DEFECT_KINDS.join(', ')}) and exact masks (categories: ${Object.keys(REAL_CATEGORIES).join(', ')})`,
  )
  .requiredOption('--out <dir>', 'output folder (must not exist)')
  .option('--size <px>', 'image size', intArg(16), 256)
  .option('--seed <n>', 'random seed', intArg(0), 1)
  .option('--train <n>', 'good training images per category', intArg(1), 60)
  .option('--test-good <n>', 'good test images per category', intArg(0), 15)
  .option('--per-defect <n>', 'test images per defect type', intArg(0), 8)
  .option('--categories <list>', 'comma-separated subset', (v: string) => v.split(',').filter(Boolean))
  .option('--defects <list>', 'comma-separated subset of defect types', (v: string) =>
    v.split(',').filter(Boolean),
  )
  .option(
    '--source-dir <folder>',
    "read the photos from this folder (the archive's textures/ folder extracted) instead of the installed package",
  )
  .action(
    async (o: {
      out: string;
      size: number;
      seed: number;
      train: number;
      testGood: number;
      perDefect: number;
      categories?: string[];
      defects?: string[];
      sourceDir?: string;
    }) => {
      const out = resolve(o.out);
      const started = Date.now();
      const written = await buildRealBenchmark(out, {
        size: o.size,
        seed: o.seed,
        trainGood: o.train,
        testGood: o.testGood,
        perDefect: o.perDefect,
        categories: o.categories,
        defects: o.defects as RealisticDefectKind[] | undefined,
        source: o.sourceDir ? dirSource(resolve(o.sourceDir)) : undefined,
        onProgress: (m) => console.log(m),
      });
      if (!written)
        throw new UserError(
          'INVALID_ARGUMENT',
          `--out ${out} already exists; choose another folder or delete it`,
        );
      console.log(
        `wrote real-photo benchmark to ${out} in ${((Date.now() - started) / 1000).toFixed(1)} s (see SOURCES.md)`,
      );
    },
  );

program
  .command('check')
  .description('validate a dataset folder and print a per-category table')
  .argument('<dir>', 'dataset root (MVTec AD layout)')
  .option('--val-fraction <f>', 'validation share of train/good', fractionArg, defaults.val_fraction)
  .option('--seed <n>', 'split seed', intArg(0), defaults.seed)
  .option('--no-decode', 'skip decoding every image (structure and masks only)')
  .action(async (dir: string, o: { valFraction: number; seed: number; decode: boolean }) => {
    const root = resolve(dir);
    const rows = await checkDataset(root, o);
    if (rows.length === 0)
      throw new UserError(
        'INVALID_DATASET',
        `no categories in ${root}: expected folders like <category>/train/good`,
      );
    console.log(formatCheckTable(rows));
    if (rows.some((r) => r.problems.length > 0)) process.exitCode = 1;
  });

program.parseAsync().catch((err: unknown) => {
  console.error(isUserError(err) ? `error: ${err.message}` : describeError(err));
  process.exitCode = isUserError(err) ? 2 : 1;
});
