/**
 * `npm run predict -- --model <package dir> --input <dir|files...> [--out <dir>]`
 * Scores images offline: predictions.csv, predictions.json and heatmap overlays in --out.
 * Exit codes: 0 all scored, 1 some files failed (listed), 2 bad arguments / invalid model.
 */
import { resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { type BackendPreference, selectBackend } from '../lib/model/backend';
import { DEVICE_PREFERENCES, type DevicePreference } from '../lib/onnx/execution-provider';
import { loadModelPackage } from '../lib/package/package';
import { collectInputs, predictFiles } from '../lib/serve/batch-predict';
import { createEngineScorer, INFERENCE_ENGINES, type InferenceEngine } from '../lib/serve/engine';
import type { ServedModel } from '../lib/serve/models';
import { loadDefaultScorer } from '../lib/serve/predictor';
import { resolveModelsSource } from '../lib/serve/remote-models';
import { positiveInt } from '../lib/util/cli-args';
import { describeError, isUserError } from '../lib/util/errors';

const program = new Command('predict')
  .description('Score images with a model package; writes predictions.csv, predictions.json and overlay PNGs')
  .requiredOption(
    '--model <dir>',
    'model package folder (runs/<pipeline>/<run>/<category>/package/package), or its s3://bucket/prefix',
  )
  .requiredOption('--input <paths...>', 'image files and/or folders (searched recursively)')
  .option('--out <dir>', 'output folder', 'predictions')
  .option('--overlay-size <px>', 'longest side of the overlay PNGs', positiveInt, 512)
  .option('--max-pixels <n>', 'largest image (width*height) accepted', positiveInt, 40_000_000)
  .addOption(
    new Option('--backend <name>', 'tfjs backend for inference')
      .choices(['auto', 'wasm', 'webgpu', 'tensorflow', 'cpu'])
      .default('auto'),
  )
  .addOption(
    new Option('--engine <name>', 'model forward pass: onnx, tfjs, or auto (onnx if it loads, else tfjs)')
      .choices([...INFERENCE_ENGINES])
      .default('auto'),
  )
  .addOption(
    new Option(
      '--device <name>',
      'ONNX Runtime execution provider for --engine onnx/auto: auto (cuda, then webgpu, else cpu; $ANOMALY_SPOTTER_DEVICE), cpu, cuda, webgpu',
    )
      .choices([...DEVICE_PREFERENCES])
      .default('auto'),
  )
  .parse();

const opts = program.opts<{
  model: string;
  input: string[];
  out: string;
  overlaySize: number;
  maxPixels: number;
  backend: BackendPreference;
  engine: InferenceEngine;
  device: DevicePreference;
}>();

async function main(): Promise<number> {
  await selectBackend(opts.backend, 'infer');
  const pkg = await loadModelPackage(resolve(await resolveModelsSource(opts.model)));
  const model: ServedModel = {
    category: pkg.metadata.category,
    pkg: pkg as ServedModel['pkg'],
    runDir: null,
  };
  const engine = await createEngineScorer(opts.engine, [model], { device: opts.device });
  if (engine.executionProvider) {
    const ep = engine.executionProvider;
    process.stderr.write(
      `engine onnx, execution provider ${ep.provider}${ep.fallbackReason ? ` (${ep.fallbackReason})` : ''}\n`,
    );
  }
  if (engine.fallbackReason) {
    process.stderr.write(
      `warning: ONNX Runtime unavailable (${engine.fallbackReason}): inference runs on tfjs\n`,
    );
  }
  const files = await collectInputs(opts.input);
  if (files.length === 0) {
    process.stderr.write(`error: no images found in ${opts.input.join(', ')}\n`);
    return 2;
  }
  const outDir = resolve(opts.out);
  const bar = new SingleBar({
    format: 'scoring {bar} {value}/{total} images | {file}',
    hideCursor: true,
    clearOnComplete: false,
  });
  bar.start(files.length, 0, { file: '' });
  const { rows, failures } = await predictFiles({
    model,
    files,
    outDir,
    scorer: engine.scorer ?? (await loadDefaultScorer()),
    maxPixels: opts.maxPixels,
    overlaySize: opts.overlaySize,
    onProgress: (done, _total, file) => bar.update(done, { file }),
  });
  bar.stop();
  await engine.release();
  const defective = rows.filter((r) => r.verdict === 'defective').length;
  process.stdout.write(
    `${rows.length} scored (${defective} defective, ${rows.length - defective} good) with ${pkg.metadata.category} ` +
      `(run ${pkg.metadata.runId}); results in ${outDir}/predictions.csv\n`,
  );
  if (failures.length > 0) {
    process.stderr.write(`${failures.length} file(s) could not be scored:\n`);
    for (const f of failures) process.stderr.write(`  ${f.file}: ${f.message}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${isUserError(err) ? err.message : describeError(err)}\n`);
    process.exit(isUserError(err) ? 2 : 1);
  },
);
