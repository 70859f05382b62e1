/**
 * `npm run pipeline -- promote <category> --run <run-id> [--pipeline nightly]` and `rollback <category>`:
 * the champion pointer (lib/package/champion) moved by a person rather than by the promote step.
 * `promote` checks that the run's package loads and is calibrated, and records the metrics of its report.
 */
import { basename, join, resolve } from 'node:path';
import { DEFAULT_RUNS_ROOT, displayPath } from '../../lib/config/paths';
import { championPath, readChampion, rollbackChampion, writeChampion } from '../../lib/package/champion';
import { loadModelPackage } from '../../lib/package/package';
import { PACKAGE_DIR_NAME } from '../../lib/package/package-step';
import { UserError } from '../../lib/util/errors';
import { say } from './session';

export interface ChampionFlags {
  pipeline: string;
  runsRoot?: string;
  run?: string;
  step?: string;
}

/** `nightly`, `pipelines/nightly.yaml` -> `nightly` (the run folder's pipeline name). */
const pipelineName = (p: string) => basename(p).replace(/\.ya?ml$/, '');

export async function promoteCommand(category: string, flags: ChampionFlags): Promise<number> {
  const pipeline = pipelineName(flags.pipeline);
  const runsRoot = resolve(flags.runsRoot ?? DEFAULT_RUNS_ROOT);
  if (!flags.run) throw new UserError('INVALID_ARGUMENT', 'promote: --run <run-id> is required');
  const packageDir = join(runsRoot, pipeline, flags.run, category, flags.step ?? 'package', PACKAGE_DIR_NAME);
  const pkg = await loadModelPackage(packageDir, { requireCalibration: true });
  pkg.model.dispose();
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  const path = championPath(runsRoot, pipeline, category);
  const previous = await readChampion(path);
  await writeChampion(path, {
    pipeline,
    category,
    packageDir,
    runId: flags.run,
    metrics: {
      imageAuroc: num(pkg.metrics?.imageAuroc),
      pixelAuroc: num(pkg.metrics?.pixelAuroc),
      images: 0,
    },
    promotedAt: new Date().toISOString(),
    reason: 'promoted by hand (npm run pipeline -- promote)',
    previous,
  });
  say(
    `${category}: champion is now ${displayPath(packageDir)} (was ${previous ? previous.runId : 'none'}); ${displayPath(path)}`,
  );
  return 0;
}

export async function rollbackCommand(category: string, flags: ChampionFlags): Promise<number> {
  const pipeline = pipelineName(flags.pipeline);
  const path = championPath(resolve(flags.runsRoot ?? DEFAULT_RUNS_ROOT), pipeline, category);
  const back = await rollbackChampion(path);
  say(`${category}: champion rolled back to run ${back.runId} (${displayPath(back.packageDir)})`);
  return 0;
}
