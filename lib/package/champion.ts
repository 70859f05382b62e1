/**
 * The champion of a category: the model package a scheduled retrain may replace only by one that is
 * not worse (the promote step, lib/package/promote-step). One pointer file per pipeline and category,
 * `<runs root>/.champions/<pipeline>/<category>.json`, written atomically, naming the package folder,
 * the metrics it was promoted on and the pointer it replaced (so `rollback` can go back).
 * `serve --models <runs root>` serves a category's champion instead of its newest package.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';

export const CHAMPIONS_DIR = '.champions';

export interface ChampionMetrics {
  imageAuroc: number | null;
  pixelAuroc: number | null;
  /** Test images the metrics were computed on. */
  images: number;
}

const metricsSchema = z.object({
  imageAuroc: z.number().nullable(),
  pixelAuroc: z.number().nullable(),
  images: z.number().int().min(0),
});

interface PointerShape {
  pipeline: string;
  category: string;
  /**
   * The package folder: absolute in memory; stored relative to the runs root (so a runs folder can
   * move, and a pointer in a bucket means the same package on every host's mirror).
   */
  packageDir: string;
  runId: string;
  metrics: ChampionMetrics;
  promotedAt: string;
  reason: string;
  previous: PointerShape | null;
}

const pointerSchema: z.ZodType<PointerShape> = z.lazy(() =>
  z.object({
    pipeline: z.string(),
    category: z.string(),
    packageDir: z.string(),
    runId: z.string(),
    metrics: metricsSchema,
    promotedAt: z.string(),
    reason: z.string(),
    previous: pointerSchema.nullable(),
  }),
);
export type ChampionPointer = PointerShape;

export function championPath(runsRoot: string, pipeline: string, category: string): string {
  return join(runsRoot, ...championKey(pipeline, category).split('/'));
}

/** The runs root of a run folder (`<runs root>/<pipeline>/<run-id>`). */
export const runsRootOf = (runDir: string) => dirname(dirname(runDir));

/** The runs root a pointer file belongs to (`<runs root>/.champions/<pipeline>/<category>.json`). */
const runsRootOfPointer = (path: string) => dirname(dirname(dirname(path)));

/** Store key of a category's pointer, relative to the runs root. */
export const championKey = (pipeline: string, category: string) =>
  `${CHAMPIONS_DIR}/${pipeline}/${category}.json`;

function mapDirs(p: ChampionPointer | null, f: (dir: string) => string): ChampionPointer | null {
  return p ? { ...p, packageDir: f(p.packageDir), previous: mapDirs(p.previous, f) } : null;
}

export async function readChampion(path: string): Promise<ChampionPointer | null> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new UserError('INVALID_MODEL', `${path}: not readable JSON (${(err as Error).message})`);
  }
  const parsed = pointerSchema.safeParse(json);
  if (!parsed.success)
    throw new UserError(
      'INVALID_MODEL',
      `${path}: not a champion pointer (${z.prettifyError(parsed.error)})`,
    );
  // Relative folders (what writeChampion stores) resolve against the pointer's runs root; older
  // pointers hold absolute ones.
  const root = runsRootOfPointer(path);
  return mapDirs(parsed.data, (d) => (isAbsolute(d) ? d : join(root, ...d.split('/'))));
}

/** How many earlier champions a pointer remembers for rollback (a nightly run adds one each night). */
export const CHAMPION_HISTORY = 10;

function truncated(p: ChampionPointer | null, depth: number): ChampionPointer | null {
  if (!p) return null;
  return { ...p, previous: depth <= 1 ? null : truncated(p.previous, depth - 1) };
}

export async function writeChampion(path: string, p: ChampionPointer): Promise<void> {
  const root = runsRootOfPointer(path);
  const portable = mapDirs({ ...p, previous: truncated(p.previous, CHAMPION_HISTORY) }, (d) => {
    const rel = relative(root, d);
    return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel.split(sep).join('/') : d;
  });
  await writeJsonAtomic(path, portable);
}

/** Whether the challenger may replace the champion: not worse than `tolerance` on image AUROC. */
export function promotionDecision(
  challenger: ChampionMetrics,
  champion: ChampionMetrics | null,
  tolerance: number,
): { promote: boolean; reason: string } {
  if (!champion) return { promote: true, reason: 'first model of this category' };
  const a = challenger.imageAuroc;
  const b = champion.imageAuroc;
  if (a === null || b === null)
    return { promote: true, reason: 'no labelled defective test images to compare on; the newer model wins' };
  if (a >= b - tolerance)
    return {
      promote: true,
      reason: `image AUROC ${a.toFixed(3)} vs the champion's ${b.toFixed(3)} (tolerance ${tolerance})`,
    };
  return {
    promote: false,
    reason: `image AUROC ${a.toFixed(3)} is worse than the champion's ${b.toFixed(3)} by more than ${tolerance}`,
  };
}

/** Points the category back at the champion before the current one; throws when there is none. */
export async function rollbackChampion(path: string): Promise<ChampionPointer> {
  const cur = await readChampion(path);
  if (!cur) throw new UserError('INVALID_ARGUMENT', `${path}: no champion to roll back`);
  if (!cur.previous)
    throw new UserError('INVALID_ARGUMENT', `${path}: the champion has no predecessor to roll back to`);
  const back: ChampionPointer = {
    ...cur.previous,
    promotedAt: new Date().toISOString(),
    reason: `rolled back from ${cur.runId}`,
  };
  await writeChampion(path, back);
  return back;
}
