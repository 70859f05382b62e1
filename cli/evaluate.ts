/**
 * `npm run evaluate -- --model <package dir | run dir> --data-root <dir> [--category <c>] [--out <dir>]`
 * Evaluates a trained model outside the pipeline and writes the same per-category report
 * (report.md / report.html / report.json / predictions.csv) the pipeline's report step writes.
 */
import { join } from 'node:path';
import { Command } from 'commander';
import { evaluateOffline } from '../lib/report/evaluate-offline';
import { positiveInt } from '../lib/util/cli-args';
import { describeError, isUserError } from '../lib/util/errors';

const program = new Command('evaluate')
  .description('Evaluate a trained model package on a dataset and write the report')
  .requiredOption(
    '--model <dir>',
    'a model package folder, or a pipeline run folder (runs/<pipeline>/<run-id>)',
  )
  .requiredOption(
    '--data-root <dir>',
    'dataset root in the MVTec AD layout (<root>/<category>/train, test, ground_truth)',
  )
  .option(
    '--category <name>',
    "category to evaluate (default: the package's category; required with a run folder)",
  )
  .option('--out <dir>', 'output folder (default: runs/evaluate/<category>-<timestamp>)')
  .option('--batch-size <n>', 'inference batch size', positiveInt, 8)
  .action(
    async (opts: { model: string; dataRoot: string; category?: string; out?: string; batchSize: number }) => {
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const outDir = opts.out ?? join('runs', 'evaluate', `${opts.category ?? 'model'}-${stamp}`);
      let last = '';
      const result = await evaluateOffline({
        model: opts.model,
        dataRoot: opts.dataRoot,
        category: opts.category,
        outDir,
        batchSize: opts.batchSize,
        onProgress: (step, d) => {
          const line = `[${step}] ${d.message ?? d.stage}`;
          if (line !== last) process.stderr.write(`${line}\n`);
          last = line;
        },
      });
      const s = result.summary;
      const show = (v: unknown) =>
        typeof v === 'number' ? v.toFixed(4) : v === null ? 'undefined (see report)' : String(v);
      process.stdout.write(
        [
          `image AUROC ${show(s.imageAuroc)}  AP ${show(s.imageAp)}  F1 ${show(s.f1)} (threshold ${show(s.threshold)}, ${s.strategy})`,
          `pixel AUROC ${show(s.pixelAuroc)}  AUPRO@0.3 ${show(s.aupro)}  latency ${show(s.meanMsPerImage)} ms/image on ${s.backend}`,
          ...result.outputs.map((o) => `${o.name}: ${join(outDir, o.path)}`),
          '',
        ].join('\n'),
      );
    },
  );

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`${isUserError(err) ? 'error' : 'unexpected error'}: ${describeError(err)}\n`);
  process.exitCode = isUserError(err) ? 2 : 1;
});
