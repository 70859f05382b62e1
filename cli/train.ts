/**
 * `npm run train -- --category <c> --data-root <dir> [--epochs N --image-size S --batch-size B --lr R --seed N --out <dir>]`
 * Runs preprocess + train for one category locally, without Temporal, with a progress bar.
 * Ctrl-C writes a checkpoint and exits; running the same command again resumes from it.
 * Exit codes: 0 trained, 1 failed, 2 bad arguments/config, 130 interrupted.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { addTrainingOverrideOptions, trainingOverridesFromFlags } from '../lib/config/cli-overrides';
import { loadTrainingConfig } from '../lib/config/load';
import type { TrainingConfig } from '../lib/config/schema';
import { preprocessStep } from '../lib/data/preprocess-step';
import type { StepContext, StepHooks, StepResult } from '../lib/steps/contracts';
import { trainStep } from '../lib/train/train-step';
import { TrainingCancelled } from '../lib/train/trainer';
import { positiveInt } from '../lib/util/cli-args';
import { describeError, isUserError } from '../lib/util/errors';

const program = addTrainingOverrideOptions(
  new Command('train')
    .description('Preprocess and train one category locally (no Temporal); rerun to resume')
    .requiredOption('--category <name>', 'category folder under --data-root (MVTec AD layout)')
    .requiredOption('--data-root <dir>', 'dataset root (<root>/<category>/train/good, ...)'),
)
  .option('--out <dir>', 'run folder (rerunning with the same folder resumes)', 'runs/local')
  .option('--config-dir <dir>', 'folder with training.yaml and categories.yaml', 'config')
  .option('--set <key=value...>', 'extra config overrides, e.g. --set lr_schedule.name=step', [])
  .addOption(
    new Option('--backend <name>', 'tfjs backend').choices(['auto', 'wasm', 'webgpu', 'tensorflow', 'cpu']),
  )
  .addOption(
    new Option('--engine <name>', 'training engine (docs/CONFIG.md)').choices(['auto', 'onnx', 'tfjs']),
  )
  .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt)
  .parse();

const opts = program.opts<{
  category: string;
  dataRoot: string;
  epochs?: number;
  imageSize?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  out: string;
  configDir: string;
  set: string[];
  backend?: TrainingConfig['backend'];
  engine?: TrainingConfig['engine'];
  threads?: number;
  device?: TrainingConfig['device'];
}>();

async function loadConfig(): Promise<TrainingConfig> {
  const overrides: Record<string, unknown> = { ...trainingOverridesFromFlags(opts) };
  if (opts.backend) overrides.backend = opts.backend;
  if (opts.engine) overrides.engine = opts.engine;
  if (opts.threads) overrides.threads = opts.threads;
  return loadTrainingConfig({ configDir: opts.configDir, category: opts.category, overrides });
}

/** Reuses a finished preprocess step when it was made for the same image size. */
async function reusablePreprocess(ctx: StepContext): Promise<StepResult | null> {
  const resultFile = join(ctx.stepDir, 'result.json');
  const manifestFile = join(ctx.stepDir, 'manifest.json');
  if (!existsSync(resultFile) || !existsSync(manifestFile)) return null;
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { size?: number };
  if (manifest.size !== ctx.config.image_size) return null;
  return JSON.parse(await readFile(resultFile, 'utf8')) as StepResult;
}

async function main(): Promise<number> {
  const config = await loadConfig();
  const runDir = resolve(opts.out);
  const ctx = (step: 'preprocess' | 'train', inputs: StepContext['inputs']): StepContext => ({
    runDir,
    pipeline: 'local',
    runId: 'local',
    category: opts.category,
    dataRoot: resolve(opts.dataRoot),
    step,
    stepDir: join(runDir, opts.category, step),
    config,
    params: {},
    inputs,
  });
  const ac = new AbortController();
  process.on('SIGINT', () => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write('\ninterrupt: writing a checkpoint (Ctrl-C again to quit at once)\n');
    ac.abort();
  });
  const bar = new SingleBar({
    format:
      '{stage} epoch {epoch}/{epochs} |{bar}| {value}/{total} loss {loss} val {val} {ips} img/s ETA {eta_formatted}',
    hideCursor: true,
    etaBuffer: 50,
  });
  let barStarted = false;
  const hooks: StepHooks = {
    signal: ac.signal,
    attempt: 1,
    progress: (p) => {
      if (!p.totalBatches) return;
      const payload = {
        stage: p.stage,
        epoch: p.epoch ?? 0,
        epochs: p.totalEpochs ?? config.epochs,
        loss: p.loss?.toFixed(4) ?? '-',
        val: p.valLoss?.toFixed(4) ?? '-',
        ips: p.imagesPerSec?.toFixed(1) ?? '-',
      };
      if (!barStarted) {
        bar.start(p.totalBatches, p.batch ?? 0, payload);
        barStarted = true;
      }
      bar.setTotal(p.totalBatches);
      bar.update(p.batch ?? 0, payload);
    },
  };

  const pre = ctx('preprocess', {});
  const preprocess = (await reusablePreprocess(pre)) ?? (await preprocessStep(pre, hooks));
  try {
    const result = await trainStep(ctx('train', { preprocess }), hooks);
    if (barStarted) bar.stop();
    const best = result.outputs.find((o) => o.name === 'best_model');
    console.log(
      `trained ${opts.category}: ${result.summary.epochsRun} epochs, best epoch ${result.summary.bestEpoch} ` +
        `(val loss ${Number(result.summary.bestValLoss).toFixed(5)}), engine ${result.summary.engine}, ` +
        `${result.summary.executionProvider ? `execution provider ${result.summary.executionProvider}, ` : ''}` +
        `tfjs backend ${result.summary.backend}, ${Number(result.summary.imagesPerSec).toFixed(1)} img/s\n` +
        `best model: ${best ? join(runDir, best.path) : '(none)'}`,
    );
    return 0;
  } catch (err) {
    if (barStarted) bar.stop();
    if (err instanceof TrainingCancelled) {
      console.error(`${err.message}\nrun the same command again to resume`);
      return 130;
    }
    throw err;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(describeError(err));
    process.exit(isUserError(err) ? 2 : 1);
  },
);
