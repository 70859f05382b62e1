/**
 * The champion of a category: the model package a scheduled retrain may replace only by one that is
 * not worse (the promote step, lib/package/promote-step). One pointer file per pipeline and category,
 * `<runs root>/.champions/<pipeline>/<category>.json`, written atomically, naming the package folder,
 * the metrics it was promoted on and the pointer it replaced (so `rollback` can go back).
 * `serve --models <runs root>` serves a category's champion instead of its newest package.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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
  /** Absolute package folder. */
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
  return join(runsRoot, CHAMPIONS_DIR, pipeline, `${category}.json`);
}

/** The runs root of a run folder (`<runs root>/<pipeline>/<run-id>`). */
export const runsRootOf = (runDir: string) => dirname(dirname(runDir));

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
  return parsed.data;
}

/** How many earlier champions a pointer remembers for rollback (a nightly run adds one each night). */
export const CHAMPION_HISTORY = 10;

function truncated(p: ChampionPointer | null, depth: number): ChampionPointer | null {
  if (!p) return null;
  return { ...p, previous: depth <= 1 ? null : truncated(p.previous, depth - 1) };
}

export async function writeChampion(path: string, p: ChampionPointer): Promise<void> {
  await writeJsonAtomic(path, { ...p, previous: truncated(p.previous, CHAMPION_HISTORY) });
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
