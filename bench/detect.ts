/**
 * `npm run bench:detect -- --pipeline <yaml> --data-root <dir> [--category a b] [--set k=v ...]`
 * Detection quality and cost of a pipeline's detector on a dataset: the pipeline's own plan (same
 * config layers and steps as `npm run pipeline`), run in-process without Temporal, one category
 * after another, then one table: image AUROC, F1 at the validation-fitted threshold, pixel AUROC,
 * AUPRO@0.3, fit/train seconds, ms per image, package size. Used for docs/RESULTS.md.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { trainingOverridesFromFlags } from '../lib/config/cli-overrides';
import { buildRunPlan } from '../lib/pipeline/build-plan';
import type { RunPlan } from '../lib/pipeline/plan';
import { STEPS } from '../lib/registry';
import type { StepActivity, StepContext, StepResult } from '../lib/steps/contracts';
import { localHooks } from '../lib/steps/contracts';

const program = new Command('bench:detect')
  .requiredOption('--pipeline <yaml>', 'pipeline file (its training config and steps are used)')
  .requiredOption('--data-root <dir>', 'dataset root in the MVTec AD layout')
  .option('--category <names...>', 'categories (default: all in the data root)')
  .option('--set <key=value...>', 'config overrides, as npm run pipeline', [])
  .option('--runs-root <dir>', 'where the run folder goes', 'runs')
  .option('--json <file>', 'also write the rows as JSON')
  .parse();
const opts = program.opts<{
  pipeline: string;
  dataRoot: string;
  category?: string[];
  set: string[];
  runsRoot: string;
  json?: string;
}>();

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return total;
}

/** Runs the plan's steps for one category in dependency order (the workflow's DAG, sequentially). */
async function runCategory(plan: RunPlan, category: string): Promise<Record<string, StepResult>> {
  const cat = plan.categories.find((c) => c.name === category);
  if (!cat) throw new Error(`category ${category} not in the plan`);
  const done: Record<string, StepResult> = {};
  const byActivity: Partial<Record<StepActivity, StepResult>> = {};
  const pending = [...plan.steps];
  while (pending.length > 0) {
    const i = pending.findIndex((s) => s.needs.every((n) => done[n]));
    if (i < 0) throw new Error('plan has a cycle');
    const [step] = pending.splice(i, 1);
    const ctx: StepContext = {
      runDir: plan.runDir,
      pipeline: plan.pipeline,
      runId: plan.runId,
      category,
      dataRoot: plan.dataRoot,
      step: step.name,
      stepDir: join(plan.runDir, category, step.name),
      config: cat.config,
      params: step.params,
      inputs: { ...byActivity },
    };
    const t0 = performance.now();
    const res = await STEPS[step.activity](ctx, localHooks());
    process.stderr.write(`  ${category}/${step.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    done[step.name] = res;
    byActivity[step.activity] = res;
  }
  return done;
}

async function main(): Promise<void> {
  const plan = await buildRunPlan({
    pipelinePath: opts.pipeline,
    dataRoot: opts.dataRoot,
    categories: opts.category ?? 'all',
    overrides: trainingOverridesFromFlags({ set: opts.set }),
    runsRoot: opts.runsRoot,
  });
  process.stderr.write(`run folder ${plan.runDir}\n`);
  const rows: Record<string, number | string | null>[] = [];
  for (const c of plan.categories) {
    const t0 = performance.now();
    const r = await runCategory(plan, c.name);
    const byAct = (a: StepActivity) => Object.values(r).find((x) => x.activity === a);
    const rep = byAct('report')?.summary ?? {};
    const train = byAct('train')?.summary ?? {};
    const pkg = byAct('package') ?? byAct('checkpoint');
    const num = (v: unknown) => (typeof v === 'number' ? v : null);
    rows.push({
      category: c.name,
      model: typeof train.model === 'string' ? train.model : (c.config.model.kind ?? 'autoencoder'),
      imageAuroc: num(rep.imageAuroc),
      f1: num(rep.f1),
      pixelAuroc: num(rep.pixelAuroc),
      aupro: num(rep.aupro),
      trainSeconds: num(train.trainSeconds),
      msPerImage: num(rep.meanMsPerImage),
      packageMiB: pkg ? (await dirBytes(join(plan.runDir, c.name, pkg.step, 'package'))) / 2 ** 20 : null,
      wallSeconds: (performance.now() - t0) / 1000,
    });
  }
  const f = (v: number | string | null, d = 3) => (typeof v === 'number' ? v.toFixed(d) : String(v ?? '-'));
  const mean = (k: string) => {
    const v = rows.map((r) => r[k]).filter((x): x is number => typeof x === 'number');
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const header =
    '| category | image AUROC | F1 | pixel AUROC | AUPRO@0.3 | train s | ms/image | package MiB |';
  const lines = [header, '|---|---|---|---|---|---|---|---|'];
  for (const r of rows)
    lines.push(
      `| ${r.category} | ${f(r.imageAuroc)} | ${f(r.f1)} | ${f(r.pixelAuroc)} | ${f(r.aupro)} | ${f(r.trainSeconds, 1)} | ${f(r.msPerImage, 1)} | ${f(r.packageMiB, 1)} |`,
    );
  lines.push(
    `| **mean** | ${f(mean('imageAuroc'))} | ${f(mean('f1'))} | ${f(mean('pixelAuroc'))} | ${f(mean('aupro'))} | ${f(mean('trainSeconds'), 1)} | ${f(mean('msPerImage'), 1)} | ${f(mean('packageMiB'), 1)} |`,
  );
  process.stdout.write(
    `model: ${rows[0]?.model ?? '-'}; pipeline ${plan.pipeline}; run ${plan.runDir}\n${lines.join('\n')}\n`,
  );
  if (opts.json) {
    const { writeJsonAtomic } = await import('../lib/util/atomic');
    await writeJsonAtomic(opts.json, { pipeline: plan.pipeline, runDir: plan.runDir, rows });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
