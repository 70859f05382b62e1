/**
 * Which model packages a server serves: one package folder, or every package found under a runs folder
 * (newest calibrated package per category, so `--models runs/` serves the latest run of each category),
 * except where a category has a champion (the promote step, lib/package/champion): then its champion.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CHAMPIONS_DIR, readChampion } from '../package/champion';
import {
  type LoadedPackage,
  loadModelPackage,
  PACKAGE_FILES,
  validateModelPackage,
} from '../package/package';
import { UserError } from '../util/errors';

export interface ServedModel {
  category: string;
  pkg: LoadedPackage & { calibration: NonNullable<LoadedPackage['calibration']> };
  /** The run folder (`runs/<pipeline>/<run-id>`) when the package sits inside one: its reports are served. */
  runDir: string | null;
}

export interface SkippedPackage {
  dir: string;
  reason: string;
}

const isFile = (p: string) =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

/** Package folders below `root` (`.../<category>/<step>/package/manifest.json`), bounded depth. */
async function findPackageDirs(root: string, depth = 6): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, left: number): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.') || e.name === 'node_modules') continue;
      const sub = join(dir, e.name);
      if (e.name === 'package' && (await isFile(join(sub, PACKAGE_FILES.manifest)))) found.push(sub);
      else if (left > 0) await walk(sub, left - 1);
    }
  };
  await walk(root, depth);
  return found.sort();
}

/**
 * `<runDir>/<category>/<step>/package` (the step contract's layout) -> the run folder, when the
 * package sits in one (a copied-out package folder has no run around it).
 */
function runDirOf(packageDir: string, category: string): string | null {
  const categoryDir = dirname(dirname(packageDir));
  return basename(categoryDir) === category ? dirname(categoryDir) : null;
}

/**
 * Champion pointers for packages under `root`: `<root>/.champions/<pipeline>/<category>.json`, or
 * `<runs root>/.champions/<pipeline>/` when `root` is a pipeline's folder.
 */
async function championPointers(
  root: string,
  onUnreadable: (file: string, reason: string) => void = () => {},
): Promise<{ category: string; packageDir: string; file: string }[]> {
  const dirs: string[] = [];
  const own = join(root, CHAMPIONS_DIR);
  for (const e of await readdir(own, { withFileTypes: true }).catch(() => []))
    if (e.isDirectory()) dirs.push(join(own, e.name));
  dirs.push(join(dirname(root), CHAMPIONS_DIR, basename(root)));
  const out: { category: string; packageDir: string; file: string }[] = [];
  for (const d of dirs)
    for (const f of (await readdir(d).catch(() => [] as string[]))
      .filter((n) => n.endsWith('.json'))
      .sort()) {
      const file = join(d, f);
      const p = await readChampion(file).catch((err: Error) => {
        onUnreadable(file, err.message);
        return null;
      });
      if (p) out.push({ category: p.category, packageDir: p.packageDir, file });
    }
  return out;
}

/** A loaded, calibrated package as the server serves it. */
export function servedModel(pkg: LoadedPackage): ServedModel {
  return {
    category: pkg.metadata.category,
    pkg: pkg as ServedModel['pkg'],
    runDir: runDirOf(pkg.dir, pkg.metadata.category),
  };
}

/** Category -> the package folder its champion pointer names, for packages under `root`. */
export async function championPackageDirs(root: string): Promise<Map<string, string>> {
  return new Map((await championPointers(resolve(root))).map((p) => [p.category, p.packageDir]));
}

export interface LoadModelsResult {
  models: ServedModel[];
  skipped: SkippedPackage[];
}

/**
 * Loads the packages to serve. A folder that is itself a package must be valid (its error is the
 * user's answer); under a runs folder, invalid or uncalibrated packages are skipped and reported.
 */
export async function loadServedModels(path: string): Promise<LoadModelsResult> {
  const root = resolve(path);
  if (!(await stat(root).catch(() => null))) {
    throw new UserError('INVALID_ARGUMENT', `--models ${path}: no such file or folder`);
  }
  const make = servedModel;
  if (await isFile(join(root, PACKAGE_FILES.manifest))) {
    return { models: [make(await loadModelPackage(root, { requireCalibration: true }))], skipped: [] };
  }
  const dirs = await findPackageDirs(root);
  if (dirs.length === 0) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `--models ${path}: no model packages found (expected a package folder with manifest.json, or a runs folder containing <run>/<category>/package/package)`,
    );
  }
  const skipped: SkippedPackage[] = [];
  // A run's checkpoint step leaves an uncalibrated package next to the servable one of its package
  // step: reported only when its category has nothing servable.
  const uncalibrated: (SkippedPackage & { category: string })[] = [];
  const newest = new Map<string, { dir: string; createdAt: string }>();
  for (const dir of dirs) {
    try {
      const info = await validateModelPackage(dir, { requireCalibration: false });
      if (!info.calibration) {
        await validateModelPackage(dir, { requireCalibration: true }).catch((err: Error) =>
          uncalibrated.push({ dir, reason: err.message, category: info.metadata.category }),
        );
        continue;
      }
      const cur = newest.get(info.metadata.category);
      if (!cur || info.metadata.createdAt > cur.createdAt) {
        if (cur) skipped.push({ dir: cur.dir, reason: `older than ${dir}` });
        newest.set(info.metadata.category, { dir, createdAt: info.metadata.createdAt });
      } else skipped.push({ dir, reason: `older than ${cur.dir}` });
    } catch (err) {
      skipped.push({ dir, reason: (err as Error).message });
    }
  }
  for (const u of uncalibrated) if (!newest.has(u.category)) skipped.push({ dir: u.dir, reason: u.reason });
  // Champions win over the newest package: a retrain that did not pass promotion is not served.
  const pointers = await championPointers(root, (file, reason) =>
    skipped.push({ dir: file, reason: `champion pointer ignored: ${reason}` }),
  );
  for (const pointer of pointers) {
    const cur = newest.get(pointer.category);
    if (!cur || cur.dir === pointer.packageDir) continue;
    try {
      const info = await validateModelPackage(pointer.packageDir, { requireCalibration: true });
      skipped.push({
        dir: cur.dir,
        reason: `not the champion (${pointer.file} names ${pointer.packageDir})`,
      });
      newest.set(pointer.category, { dir: pointer.packageDir, createdAt: info.metadata.createdAt });
    } catch (err) {
      skipped.push({
        dir: pointer.packageDir,
        reason: `champion in ${pointer.file} unusable: ${(err as Error).message}`,
      });
    }
  }
  if (newest.size === 0) {
    throw new UserError(
      'INVALID_MODEL',
      `--models ${path}: found ${dirs.length} package(s) but none is servable:\n${skipped.map((s) => `  ${s.reason}`).join('\n')}`,
    );
  }
  const models: ServedModel[] = [];
  for (const { dir } of [...newest.values()].sort((a, b) => a.dir.localeCompare(b.dir))) {
    models.push(make(await loadModelPackage(dir, { requireCalibration: true })));
  }
  return { models, skipped };
}
