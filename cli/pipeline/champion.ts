/**
 * `npm run pipeline -- promote <category> --run <run-id> [--pipeline nightly]` and `rollback <category>`:
 * the champion pointer (lib/package/champion) moved by a person rather than by the promote step.
 * `promote` checks that the run's package loads and is calibrated, and records the metrics of its report.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { DEFAULT_RUNS_ROOT, displayPath, RUNS_ROOT_ENV } from '../../lib/config/paths';
import {
  championKey,
  championPath,
  readChampion,
  rollbackChampion,
  writeChampion,
} from '../../lib/package/champion';
import { loadModelPackage } from '../../lib/package/package';
import { PACKAGE_DIR_NAME } from '../../lib/package/package-step';
import { isStoreError } from '../../lib/store/errors';
import { isRemoteStoreUrl, openStore } from '../../lib/store/open';
import { fetchDir } from '../../lib/store/publish';
import { writeFileAtomic } from '../../lib/util/atomic';
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

/**
 * Runs `fn` on a local runs root: the folder itself, or for `s3://...` a temporary copy holding the
 * category's pointer (and the step folders `fetch` names); a pointer `fn` moved is uploaded after.
 */
async function withRunsRoot<T>(
  flags: ChampionFlags,
  pipeline: string,
  category: string,
  fn: (runsRoot: string, fetch: (stepFolder: string) => Promise<void>) => Promise<T>,
): Promise<T> {
  const url = flags.runsRoot ?? (process.env[RUNS_ROOT_ENV] || DEFAULT_RUNS_ROOT);
  if (!isRemoteStoreUrl(url)) return fn(resolve(url), async () => {});
  const store = openStore(url);
  const tmp = await mkdtemp(join(tmpdir(), 'anomaly-champion-'));
  try {
    const key = championKey(pipeline, category);
    const before = await store.getBytes(key).then(
      (b) => b.toString('utf8'),
      (err: unknown) => {
        if (isStoreError(err, 'NOT_FOUND')) return null;
        throw err;
      },
    );
    if (before !== null) await writeFileAtomic(join(tmp, ...key.split('/')), before);
    const out = await fn(tmp, async (stepFolder) => {
      await fetchDir(store, stepFolder, join(tmp, ...stepFolder.split('/')));
    });
    const after = await readFile(join(tmp, ...key.split('/')), 'utf8').catch(() => null);
    if (after !== null && after !== before)
      await store.putBytes(key, after, { contentType: 'application/json' });
    return out;
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await store.close();
  }
}

export async function promoteCommand(category: string, flags: ChampionFlags): Promise<number> {
  const pipeline = pipelineName(flags.pipeline);
  return withRunsRoot(flags, pipeline, category, async (runsRoot, fetch) => {
    if (!flags.run) throw new UserError('INVALID_ARGUMENT', 'promote: --run <run-id> is required');
    const step = flags.step ?? 'package';
    await fetch(`${pipeline}/${flags.run}/${category}/${step}`);
    const packageDir = join(runsRoot, pipeline, flags.run, category, step, PACKAGE_DIR_NAME);
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
      `${category}: champion is now run ${flags.run}'s ${step} package (was ${previous ? previous.runId : 'none'}); ${where(flags, pipeline, category, path)}`,
    );
    return 0;
  });
}

/** The pointer as a person finds it: its file, or its URL in the bucket. */
function where(flags: ChampionFlags, pipeline: string, category: string, localPath: string): string {
  const url = flags.runsRoot ?? (process.env[RUNS_ROOT_ENV] || DEFAULT_RUNS_ROOT);
  return isRemoteStoreUrl(url)
    ? `${url.replace(/\/+$/, '')}/${championKey(pipeline, category)}`
    : displayPath(localPath);
}

export async function rollbackCommand(category: string, flags: ChampionFlags): Promise<number> {
  const pipeline = pipelineName(flags.pipeline);
  return withRunsRoot(flags, pipeline, category, async (runsRoot) => {
    const path = championPath(runsRoot, pipeline, category);
    const back = await rollbackChampion(path);
    say(`${category}: champion rolled back to run ${back.runId}; ${where(flags, pipeline, category, path)}`);
    return 0;
  });
}
