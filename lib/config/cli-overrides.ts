/**
 * Training overrides given on a command line: repeatable `--set key=value` items plus the named
 * shortcuts (`--epochs`, `--batch-size`, ...), combined into the single "command line" config layer.
 * A named flag wins over a `--set` of the same key: it is the more specific request (and commander
 * does not keep the relative order of different options, so "last one wins" could not be honoured).
 */
import { type Command, Option } from 'commander';
import { integer, positiveInt, positiveNumber } from '../util/cli-args';
import { layerProblems, parseSetOverrides, throwIfProblems } from './load';
import { deepMerge } from './merge';
import type { DeepPartial, TrainingConfig } from './schema';

export interface TrainingOverrideFlags {
  /** Raw `--set` items, in command-line order (a later item for the same key wins). */
  set?: readonly string[];
  epochs?: number;
  batchSize?: number;
  imageSize?: number;
  lr?: number;
  seed?: number;
  /** `--device`: training.device (ONNX Runtime execution provider of training and scoring). */
  device?: TrainingConfig['device'];
}

/**
 * The named shortcuts on a command (`npm run pipeline`, `npm run train`); each command adds its own
 * `--set` (`npm run train` takes several items after one `--set`) and hands the parsed flags to
 * `trainingOverridesFromFlags`.
 */
export function addTrainingOverrideOptions(cmd: Command): Command {
  return cmd
    .option('--epochs <n>', 'override training.epochs', positiveInt)
    .option('--batch-size <n>', 'override training.batch_size', positiveInt)
    .option('--image-size <px>', 'override training.image_size', positiveInt)
    .option('--lr <rate>', 'override training.optimizer.lr', positiveNumber)
    .option('--seed <n>', 'override training.seed', integer)
    .addOption(
      new Option(
        '--device <name>',
        'override training.device: ONNX Runtime execution provider of training and scoring (auto: cuda, then webgpu, else cpu)',
      ).choices(['auto', 'cpu', 'cuda', 'webgpu']),
    );
}

/**
 * The command-line layer, or undefined when no override was given. Throws a UserError naming the
 * `--set` item, key or value at fault (problems are reported as `--set: <key>: expected ..., got ...`).
 */
export function trainingOverridesFromFlags(
  flags: TrainingOverrideFlags,
): DeepPartial<TrainingConfig> | undefined {
  const fromSet = parseSetOverrides(flags.set ?? []);
  // Checked on its own so that a problem names `--set` rather than the merged configuration.
  throwIfProblems(layerProblems({ source: { file: '--set', prefix: [] }, value: fromSet }));
  const named: DeepPartial<TrainingConfig> = {
    ...(flags.epochs !== undefined ? { epochs: flags.epochs } : {}),
    ...(flags.batchSize !== undefined ? { batch_size: flags.batchSize } : {}),
    ...(flags.imageSize !== undefined ? { image_size: flags.imageSize } : {}),
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
    ...(flags.device !== undefined ? { device: flags.device } : {}),
    ...(flags.lr !== undefined ? { optimizer: { lr: flags.lr } } : {}),
  };
  const merged = deepMerge(fromSet, named) as DeepPartial<TrainingConfig>;
  return Object.keys(merged).length > 0 ? merged : undefined;
}
