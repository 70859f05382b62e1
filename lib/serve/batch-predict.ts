/**
 * Offline batch prediction over files and folders (`npm run predict`): predictions.csv,
 * predictions.json and one heatmap overlay PNG per image. A file that cannot be read or decoded is
 * recorded as a failure and the rest carry on.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import { overlayPng } from './heatmap';
import { DEFAULT_MAX_PIXELS, type DecodedImage, decodeImage, ImageInputError } from './image-input';
import type { ServedModel } from './models';
import { INFERENCE_BATCH, ModelPredictor, type Scorer } from './predictor';

/** Extensions picked up when a folder is given (explicit file arguments are tried whatever their name). */
export const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp']);

export interface InputFile {
  path: string;
  /** Name in outputs: path relative to the folder argument, or the base name of a file argument. */
  name: string;
}

export interface PredictionRow {
  file: string;
  score: number;
  normalisedScore: number;
  verdict: 'defective' | 'good';
  threshold: number;
  defectArea: number;
  /** Overlay PNG, relative to the output folder. */
  overlay: string;
}

export interface PredictionFailure {
  file: string;
  code: string;
  message: string;
}

/** Image files below `dir` (own walk: `readdir({ recursive })` entries lack parentPath before Node 20.12). */
async function listImages(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listImages(p)));
    else if (e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) out.push(p);
  }
  return out;
}

/** Expands folder arguments (recursively, sorted) and checks that every argument exists. */
export async function collectInputs(inputs: string[]): Promise<InputFile[]> {
  const out: InputFile[] = [];
  for (const input of inputs) {
    const abs = resolve(input);
    const st = await stat(abs).catch(() => null);
    if (!st) throw new UserError('INVALID_ARGUMENT', `--input ${input}: no such file or folder`);
    if (st.isFile()) {
      out.push({ path: abs, name: basename(abs) });
      continue;
    }
    const files = (await listImages(abs)).sort();
    for (const f of files) out.push({ path: f, name: relative(abs, f) });
  }
  // Two arguments may yield one name (a/x.png, b/x.png): suffix repeats so outputs do not overwrite.
  const seen = new Map<string, number>();
  for (const f of out) {
    const n = seen.get(f.name) ?? 0;
    seen.set(f.name, n + 1);
    if (n > 0) f.name = `${f.name.slice(0, f.name.length - extname(f.name).length)}~${n}${extname(f.name)}`;
  }
  return out;
}

const csvField = (v: string | number) => {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function toCsv(rows: PredictionRow[]): string {
  const header = ['file', 'score', 'normalised_score', 'verdict', 'threshold', 'defect_area', 'overlay'];
  const lines = rows.map((r) =>
    [r.file, r.score, r.normalisedScore, r.verdict, r.threshold, r.defectArea, r.overlay]
      .map(csvField)
      .join(','),
  );
  return `${[header.join(','), ...lines].join('\n')}\n`;
}

export interface BatchPredictOptions {
  model: ServedModel;
  files: InputFile[];
  outDir: string;
  scorer: Scorer;
  maxPixels?: number;
  /** Overlay PNG size (longest side); the heatmap is stretched over the image at this size. */
  overlaySize?: number;
  onProgress?: (done: number, total: number, file: string) => void;
}

export interface BatchPredictResult {
  rows: PredictionRow[];
  failures: PredictionFailure[];
}

export async function predictFiles(opts: BatchPredictOptions): Promise<BatchPredictResult> {
  const { model, files, outDir } = opts;
  const spec = model.pkg.preprocess;
  const pixelThreshold = model.pkg.calibration.pixelThreshold;
  const predictor = new ModelPredictor(model, opts.scorer);
  const rows: PredictionRow[] = [];
  const failures: PredictionFailure[] = [];
  let done = 0;
  for (let start = 0; start < files.length; start += INFERENCE_BATCH) {
    const chunk = files.slice(start, start + INFERENCE_BATCH);
    const decoded: { file: InputFile; img: DecodedImage }[] = [];
    for (const file of chunk) {
      try {
        const buf = await readFile(file.path);
        const img = await decodeImage(buf, spec, {
          maxPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS,
          name: file.path,
          displaySize: opts.overlaySize ?? 512,
        });
        decoded.push({ file, img });
      } catch (err) {
        // Only per-file problems are skipped; anything else (out of memory, a bug) stops the run.
        const code = err instanceof ImageInputError ? err.code : (err as NodeJS.ErrnoException).code;
        if (!(err instanceof ImageInputError) && !(typeof code === 'string' && code.startsWith('E')))
          throw err;
        failures.push({ file: file.path, code: code ?? 'READ_ERROR', message: (err as Error).message });
        opts.onProgress?.(++done, files.length, file.name);
      }
    }
    if (decoded.length === 0) continue;
    const { predictions } = await predictor.predict(decoded.map((d) => d.img.tensor));
    for (const [i, p] of predictions.entries()) {
      const { file, img } = decoded[i];
      const overlay = join(
        'overlays',
        `${file.name.slice(0, file.name.length - extname(file.name).length)}.png`,
      );
      await writeFileAtomic(
        join(outDir, overlay),
        await overlayPng(img.display!, p.map, spec.imageSize, pixelThreshold),
      );
      rows.push({
        file: file.path,
        score: p.score,
        normalisedScore: p.normalisedScore,
        verdict: p.verdict,
        threshold: p.threshold,
        defectArea: p.defectArea,
        overlay,
      });
      opts.onProgress?.(++done, files.length, file.name);
    }
  }
  await writeFileAtomic(join(outDir, 'predictions.csv'), toCsv(rows));
  const { metadata } = model.pkg;
  await writeJsonAtomic(join(outDir, 'predictions.json'), {
    model: {
      package: model.pkg.dir,
      category: metadata.category,
      pipeline: metadata.pipeline,
      runId: metadata.runId,
    },
    createdAt: new Date().toISOString(),
    predictions: rows,
    failed: failures,
  });
  return { rows, failures };
}
