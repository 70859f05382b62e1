/**
 * Champion pointers of a run kept in object storage (`--runs-root s3://...`): the promote step runs
 * in the host's mirror (lib/store/run-mirror), so before it the category's pointer and the
 * champion's package come down from the bucket, and after it a moved pointer goes back up (one PUT:
 * atomic for readers). Pointers store runs-root-relative package folders, so the same pointer names
 * the same package in the bucket and in every mirror.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { join, posix, relative, sep } from 'node:path';
import { isStoreError } from '../store/errors';
import { fetchDir } from '../store/publish';
import type { RunMirror } from '../store/run-mirror';
import { writeFileAtomic } from '../util/atomic';
import { championKey, readChampion } from './champion';
import { PACKAGE_FILES } from './package';

export interface PulledChampion {
  /** The pointer's text as the bucket had it (null: no champion yet). */
  before: string | null;
  /** Runs-root-relative step folder of the champion's package fetched into the mirror, if any. */
  fetched: string | null;
}

export async function pullChampion(
  mirror: RunMirror,
  pipeline: string,
  category: string,
): Promise<PulledChampion> {
  const key = championKey(pipeline, category);
  const local = join(mirror.localRunsRoot, ...key.split('/'));
  const store = mirror.openRunsRoot();
  try {
    let before: string | null;
    try {
      before = (await store.getBytes(key)).toString('utf8');
    } catch (err) {
      if (!isStoreError(err, 'NOT_FOUND')) throw err;
      before = null;
    }
    if (before === null) {
      await rm(local, { force: true });
      return { before, fetched: null };
    }
    await writeFileAtomic(local, before);
    const pointer = await readChampion(local);
    const rel = pointer ? relative(mirror.localRunsRoot, pointer.packageDir).split(sep).join('/') : '';
    if (
      !pointer ||
      rel.startsWith('..') ||
      (await stat(join(pointer.packageDir, PACKAGE_FILES.manifest)).catch(() => null))
    )
      return { before, fetched: null };
    // The package folder lives inside its step's published folder (`<run>/<category>/package/package`).
    const stepPrefix = posix.dirname(rel);
    try {
      await fetchDir(store, stepPrefix, join(mirror.localRunsRoot, ...stepPrefix.split('/')));
    } catch (err) {
      // The promote step compares on the pointer's recorded metrics when the champion will not load.
      if (!isStoreError(err) || err.retryable) throw err;
      return { before, fetched: null };
    }
    return { before, fetched: stepPrefix };
  } finally {
    await store.close();
  }
}

/** Uploads the mirror's pointer when the step moved it; returns whether it did. */
export async function pushChampion(
  mirror: RunMirror,
  pipeline: string,
  category: string,
  pulled: PulledChampion,
): Promise<boolean> {
  const key = championKey(pipeline, category);
  const after = await readFile(join(mirror.localRunsRoot, ...key.split('/')), 'utf8').catch(() => null);
  if (after === null || after === pulled.before) return false;
  const store = mirror.openRunsRoot();
  try {
    await store.putBytes(key, after, { contentType: 'application/json' });
    return true;
  } finally {
    await store.close();
  }
}
