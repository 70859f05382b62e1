/** `dataset check`: structure, masks and decodability of every image of an MVTec-layout dataset. */
import { join } from 'node:path';
import sharp from 'sharp';
import { isUserError } from '../util/errors';
import { indexCategory, listCategories } from './mvtec';

export interface CategoryCheck {
  category: string;
  trainGood: number;
  val: number;
  testGood: number;
  /** Test images per defect type. */
  defects: Record<string, number>;
  masks: number;
  problems: string[];
}

export interface CheckOptions {
  valFraction: number;
  seed: number;
  /** Fully decode every image and mask (slower; finds truncated files). */
  decode: boolean;
}

async function decodeProblem(absPath: string, relPath: string): Promise<string | null> {
  try {
    await sharp(absPath, { failOn: 'error' }).raw().toBuffer();
    return null;
  } catch (err) {
    return `cannot decode ${relPath}: ${(err as Error).message}`;
  }
}

export async function checkCategory(
  root: string,
  category: string,
  opts: CheckOptions,
): Promise<CategoryCheck> {
  try {
    const idx = await indexCategory(root, category, {
      valFraction: opts.valFraction,
      seed: opts.seed,
      missingMask: 'report',
    });
    const defects: Record<string, number> = {};
    for (const r of idx.test) if (r.label === 1) defects[r.defectType] = (defects[r.defectType] ?? 0) + 1;
    const problems = [...idx.problems];
    if (opts.decode) {
      const files = [...idx.train, ...idx.val, ...idx.test].flatMap((r) => [
        r.source,
        ...(r.maskSource ? [r.maskSource] : []),
      ]);
      for (const f of files) {
        const p = await decodeProblem(join(root, f), f);
        if (p) problems.push(p);
      }
    }
    return {
      category,
      trainGood: idx.train.length + idx.val.length,
      val: idx.val.length,
      testGood: idx.test.filter((r) => r.label === 0).length,
      defects,
      masks: idx.test.filter((r) => r.maskSource !== null).length,
      problems,
    };
  } catch (err) {
    if (!isUserError(err)) throw err;
    return { category, trainGood: 0, val: 0, testGood: 0, defects: {}, masks: 0, problems: [err.message] };
  }
}

export async function checkDataset(root: string, opts: CheckOptions): Promise<CategoryCheck[]> {
  const out: CategoryCheck[] = [];
  for (const c of await listCategories(root)) out.push(await checkCategory(root, c, opts));
  return out;
}

/** A plain-text table, one row per category, problems listed below it. */
export function formatCheckTable(rows: CategoryCheck[]): string {
  const header = ['category', 'train good', 'val split', 'test good', 'test defects', 'masks', 'problems'];
  const body = rows.map((r) => [
    r.category,
    String(r.trainGood),
    String(r.val),
    String(r.testGood),
    Object.entries(r.defects)
      .map(([k, v]) => `${k}:${v}`)
      .join(' ') || '-',
    String(r.masks),
    String(r.problems.length),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const lines = [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  for (const r of rows) for (const p of r.problems) lines.push(`${r.category}: ${p}`);
  return lines.join('\n');
}
