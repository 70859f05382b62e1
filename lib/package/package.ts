/**
 * The model package: the self-contained folder a trained model ships in (served by `npm run serve`,
 * used by `npm run predict`, copied to other machines). Layout:
 *
 *   model.json + weights.bin   tfjs layers model (lib/model/io)
 *   preprocess.json            how an image becomes the model's input tensor
 *   metadata.json              category, pipeline, run id, training summary, config (+ hash)
 *   calibration.json           thresholds and score normalisation (threshold step; required to serve)
 *   metrics.json               evaluation metrics (report step; optional)
 *
 * The checkpoint step exports the model without calibration; the package step seals the servable copy
 * (sealPackage) in its own folder. Neither changes after sealing.
 *   manifest.json              format version + sha256 of every other file; written last
 *
 * The manifest is the package's commit point: a reader trusts only files whose hash it lists, so a
 * half-copied or hand-edited package is refused with a message naming the file.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { anomalyMapSchema, type TrainingConfig, trainingConfigSchema } from '../config/schema';
import type { ScorableModel } from '../infer/scorable-model';
import type { Calibration } from '../model/calibration';
import { loadModel, MODEL_JSON, MODEL_WEIGHTS, saveModel } from '../model/io';
import {
  DRAEM_JSON,
  DRAEM_ONNX,
  type DraemModel,
  isDraemDir,
  loadDraem,
  saveDraem,
} from '../models/draem/model';
import type { OnnxDetector } from '../models/onnx-detector';
import {
  isPatchcoreDir,
  loadPatchcore,
  PATCHCORE_JSON,
  PATCHCORE_ONNX,
  type PatchcoreModel,
  savePatchcore,
} from '../models/patchcore/model';
import type { JsonValue } from '../steps/contracts';
import { sha256, sha256File, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import { jsonValueSchema as jsonValue } from '../util/json';

export const PACKAGE_FORMAT = 'anomaly-spotter-model-package';
/** Bump when a reader of the old version could misread the new layout. */
export const PACKAGE_FORMAT_VERSION = 1;

export const PACKAGE_FILES = {
  manifest: 'manifest.json',
  preprocess: 'preprocess.json',
  metadata: 'metadata.json',
  calibration: 'calibration.json',
  metrics: 'metrics.json',
} as const;

/** The files every package needs, and those of each model kind. */
const REQUIRED_FILES = [PACKAGE_FILES.preprocess, PACKAGE_FILES.metadata];
const MODEL_FILES = {
  autoencoder: [MODEL_JSON, MODEL_WEIGHTS],
  patchcore: [PATCHCORE_ONNX, PATCHCORE_JSON],
  draem: [DRAEM_ONNX, DRAEM_JSON],
} as const;

/** The model kind a package's manifest holds: its ONNX detector's json names it; else the autoencoder. */
function packageKind(files: Record<string, unknown>): keyof typeof MODEL_FILES {
  if (files[PATCHCORE_JSON]) return 'patchcore';
  if (files[DRAEM_JSON]) return 'draem';
  return 'autoencoder';
}

const fileEntrySchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().min(0),
});

export const manifestSchema = z.object({
  format: z.literal(PACKAGE_FORMAT),
  formatVersion: z.number().int().positive(),
  updatedAt: z.string(),
  files: z.record(z.string(), fileEntrySchema),
});
export type PackageManifest = z.infer<typeof manifestSchema>;

/** How an image becomes the model input; mirrors the training data loader. */
export const preprocessSchema = z.object({
  imageSize: z.number().int().positive(),
  channels: z.literal(3),
  colorSpace: z.literal('srgb'),
  /** Any input size is resized (stretched, aspect not kept) to imageSize x imageSize, like training. */
  resize: z.object({ fit: z.literal('fill'), kernel: z.enum(['lanczos3', 'cubic', 'linear', 'nearest']) }),
  /** value = pixel / 255, giving [0,1] RGB in NHWC layout; alpha is dropped, EXIF orientation ignored. */
  scaling: z.object({ divisor: z.literal(255), range: z.tuple([z.literal(0), z.literal(1)]) }),
  layout: z.literal('NHWC'),
});
export type PreprocessSpec = z.infer<typeof preprocessSchema>;

export const metadataSchema = z.object({
  category: z.string().min(1),
  pipeline: z.string(),
  runId: z.string(),
  createdAt: z.string(),
  architecture: z.discriminatedUnion('name', [
    z.object({
      name: z.literal('unet-lite'),
      widths: z.array(z.number().int().positive()),
      imageSize: z.number().int().positive(),
      parameters: z.number().int().min(0),
    }),
    z.object({
      name: z.literal('patchcore'),
      backbone: z.string(),
      strides: z.array(z.number().int().positive()),
      featureDim: z.number().int().positive(),
      bankSize: z.number().int().positive(),
      imageSize: z.number().int().positive(),
    }),
    z.object({
      name: z.literal('draem'),
      reconWidths: z.array(z.number().int().positive()),
      discWidths: z.array(z.number().int().positive()),
      parameters: z.number().int().positive(),
      steps: z.number().int().min(0),
      imageSize: z.number().int().positive(),
    }),
  ]),
  tfjsVersion: z.string(),
  /** Backend the model was trained on, when the train step reported it. */
  backend: z.string().nullable(),
  configHash: z.string(),
  config: trainingConfigSchema,
  /** The train step's summary (epochs, losses, timings...), verbatim. */
  training: z.record(z.string(), jsonValue),
});
export type PackageMetadata = z.infer<typeof metadataSchema>;

/** One line saying what the model is (reports, logs, bench output). */
export function describeArchitecture(a: PackageMetadata['architecture']): string {
  if (a.name === 'unet-lite')
    return `U-Net-lite autoencoder, widths ${a.widths.join(',')}, ${a.parameters} parameters`;
  if (a.name === 'draem')
    return `DRAEM, U-Nets ${a.reconWidths.join(',')} + ${a.discWidths.join(',')}, ${a.parameters} parameters, ${a.steps} steps`;
  return `PatchCore on ${a.backbone} (strides ${a.strides.join(',')}), bank ${a.bankSize} x ${a.featureDim}`;
}

/**
 * calibration.json. Structurally the Calibration of ./calibration; validated here because the
 * package is read from disk. Loose: the evaluation side may add fields without a format bump.
 */
export const calibrationSchema = z.looseObject({
  imageThreshold: z.number(),
  pixelThreshold: z.number(),
  scoreNorm: z.object({ min: z.number(), max: z.number() }),
  strategy: z.string(),
  // Packages sealed before score_border existed were calibrated on whole maps: keep scoring them so.
  anomalyMap: anomalyMapSchema.extend({
    score_border: anomalyMapSchema.shape.score_border.unwrap().default(0),
  }),
  imageSize: z.number().int().positive(),
});
export type PackageCalibration = z.infer<typeof calibrationSchema>;

export interface ExportPackageOptions {
  /** Folder holding the trained model's model.json + weights.bin. */
  modelDir: string;
  /** Destination; replaced as a whole if it exists. */
  packageDir: string;
  category: string;
  pipeline: string;
  runId: string;
  config: TrainingConfig;
  /** The train step's summary/metadata. */
  training: Record<string, JsonValue>;
}

export interface LoadedPackage {
  dir: string;
  model: ScorableModel;
  manifest: PackageManifest;
  metadata: PackageMetadata;
  preprocess: PreprocessSpec;
  /** null only when loaded with `requireCalibration: false`. */
  calibration: Calibration | null;
  metrics: Record<string, JsonValue> | null;
}

/** sha256 of the config with sorted keys, so equal configs hash equal whatever their key order. */
export function configHash(config: TrainingConfig): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return sha256(JSON.stringify(canonical(config)));
}

export function defaultPreprocess(imageSize: number): PreprocessSpec {
  return {
    imageSize,
    channels: 3,
    colorSpace: 'srgb',
    resize: { fit: 'fill', kernel: 'lanczos3' },
    scaling: { divisor: 255, range: [0, 1] },
    layout: 'NHWC',
  };
}

/**
 * Exports a trained model as a package. Built in a sibling temp folder and renamed into place, so the
 * destination is either absent, the old package, or the complete new one.
 */
export async function exportModelPackage(opts: ExportPackageOptions): Promise<void> {
  if (await isPatchcoreDir(opts.modelDir)) {
    await exportPatchcorePackage(opts, await loadPatchcore(opts.modelDir));
    return;
  }
  if (await isDraemDir(opts.modelDir)) {
    await exportDraemPackage(opts, await loadDraem(opts.modelDir));
    return;
  }
  const model = await loadModel(opts.modelDir);
  try {
    const inputShape = model.inputs[0].shape;
    const imageSize = inputShape[1];
    if (typeof imageSize !== 'number' || inputShape[2] !== imageSize || inputShape[3] !== 3) {
      throw new UserError(
        'INVALID_MODEL',
        `${join(opts.modelDir, MODEL_JSON)}: expected an input of [batch, S, S, 3], got [${inputShape.join(', ')}]`,
      );
    }
    if (imageSize !== opts.config.image_size) {
      throw new UserError(
        'INVALID_MODEL',
        `${join(opts.modelDir, MODEL_JSON)}: model input is ${imageSize} px but config image_size is ${opts.config.image_size}`,
      );
    }
    // Re-saving (rather than copying) normalises the weights to one weights.bin and proves they load.
    await writePackageDir(opts, imageSize, (tmp) => saveModel(model, tmp), {
      name: 'unet-lite',
      widths: opts.config.model.widths,
      imageSize,
      parameters: model.countParams(),
    });
  } finally {
    model.dispose();
  }
}

function checkDetectorSize(opts: ExportPackageOptions, model: OnnxDetector, json: string): number {
  const imageSize = model.imageSize;
  if (imageSize !== opts.config.image_size) {
    throw new UserError(
      'INVALID_MODEL',
      `${join(opts.modelDir, json)}: model input is ${imageSize} px but config image_size is ${opts.config.image_size}`,
    );
  }
  return imageSize;
}

async function exportDraemPackage(opts: ExportPackageOptions, model: DraemModel): Promise<void> {
  const imageSize = checkDetectorSize(opts, model, DRAEM_JSON);
  const { onnxSha256: _, ...info } = model.info;
  await writePackageDir(opts, imageSize, (tmp) => saveDraem(tmp, model.onnx, info), {
    name: 'draem',
    reconWidths: info.reconWidths,
    discWidths: info.discWidths,
    parameters: info.parameters,
    steps: info.steps,
    imageSize,
  });
}

async function exportPatchcorePackage(opts: ExportPackageOptions, model: PatchcoreModel): Promise<void> {
  const imageSize = checkDetectorSize(opts, model, PATCHCORE_JSON);
  const { onnxSha256: _, ...info } = model.info;
  await writePackageDir(opts, imageSize, (tmp) => savePatchcore(tmp, model.onnx, info), {
    name: 'patchcore',
    backbone: model.info.backbone.name,
    strides: model.info.strides,
    featureDim: model.info.featureDim,
    bankSize: model.info.bankSize,
    imageSize,
  });
}

/**
 * Writes a package: the model files (`writeModel`), preprocess.json, metadata.json and the manifest,
 * in a sibling temp folder renamed into place, so the destination is either absent, the old package,
 * or the complete new one.
 */
async function writePackageDir(
  opts: ExportPackageOptions,
  imageSize: number,
  writeModel: (dir: string) => Promise<unknown>,
  architecture: PackageMetadata['architecture'],
): Promise<void> {
  const tmp = join(
    dirname(opts.packageDir),
    `.${basename(opts.packageDir)}.${randomBytes(4).toString('hex')}.tmp`,
  );
  try {
    await writeModel(tmp);
    await writeJsonAtomic(join(tmp, PACKAGE_FILES.preprocess), defaultPreprocess(imageSize));
    const backend = opts.training.backend;
    const metadata: PackageMetadata = {
      category: opts.category,
      pipeline: opts.pipeline,
      runId: opts.runId,
      createdAt: new Date().toISOString(),
      architecture,
      tfjsVersion: tf.version.tfjs,
      backend: typeof backend === 'string' ? backend : null,
      configHash: configHash(opts.config),
      config: opts.config,
      training: opts.training,
    };
    await writeJsonAtomic(join(tmp, PACKAGE_FILES.metadata), metadata);
    await writeManifest(tmp);
    await replaceDir(tmp, opts.packageDir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Moves `src` to `dest`, replacing an existing `dest` (a retried step re-exports over its old output). */
async function replaceDir(src: string, dest: string): Promise<void> {
  const old = `${dest}.old-${randomBytes(4).toString('hex')}`;
  let hadOld = false;
  try {
    await rename(dest, old);
    hadOld = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await rename(src, dest);
  if (hadOld) await rm(old, { recursive: true, force: true });
}

export interface SealPackageOptions {
  /** A sealed, uncalibrated package (the checkpoint step's). */
  fromDir: string;
  /** Destination (the package step's own folder); replaced as a whole if it exists. */
  packageDir: string;
  calibration: Calibration;
  /** Test metrics (report step), shown by `serve`. */
  metrics?: Record<string, JsonValue> | null;
}

/**
 * The servable package: the files of `fromDir` (verified against its manifest; hard-linked where the
 * filesystem allows, so a large model is not copied), plus calibration.json and metrics.json, sealed by
 * a new manifest. Built in a temp folder and renamed into place; `fromDir` is never modified, and the
 * result is never modified after it is sealed.
 */
export async function sealPackage(opts: SealPackageOptions): Promise<void> {
  const source = await validateModelPackage(opts.fromDir, { requireCalibration: false });
  const parsed = calibrationSchema.safeParse(opts.calibration);
  if (!parsed.success) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `calibration for ${opts.packageDir} is invalid: ${z.prettifyError(parsed.error)}`,
    );
  }
  if (parsed.data.imageSize !== source.preprocess.imageSize) {
    throw invalid(
      opts.fromDir,
      `calibrated at ${parsed.data.imageSize} px but the model's preprocess.json says ${source.preprocess.imageSize} px`,
    );
  }
  const tmp = join(
    dirname(opts.packageDir),
    `.${basename(opts.packageDir)}.${randomBytes(4).toString('hex')}.tmp`,
  );
  try {
    await mkdir(tmp, { recursive: true });
    for (const name of Object.keys(source.manifest.files)) {
      if (name === PACKAGE_FILES.calibration || name === PACKAGE_FILES.metrics) continue;
      await link(join(opts.fromDir, name), join(tmp, name)).catch(() =>
        copyFile(join(opts.fromDir, name), join(tmp, name)),
      );
    }
    await writeJsonAtomic(join(tmp, PACKAGE_FILES.calibration), parsed.data);
    if (opts.metrics) await writeJsonAtomic(join(tmp, PACKAGE_FILES.metrics), opts.metrics);
    await writeManifest(tmp);
    await replaceDir(tmp, opts.packageDir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Hashes every regular file of the folder (except the manifest and dot-files: temp files, locks). */
async function writeManifest(dir: string): Promise<void> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && e.name !== PACKAGE_FILES.manifest && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const files: PackageManifest['files'] = {};
  for (const name of names) {
    const p = join(dir, name);
    files[name] = { sha256: await sha256File(p), bytes: (await stat(p)).size };
  }
  const manifest: PackageManifest = {
    format: PACKAGE_FORMAT,
    formatVersion: PACKAGE_FORMAT_VERSION,
    updatedAt: new Date().toISOString(),
    files,
  };
  await writeJsonAtomic(join(dir, PACKAGE_FILES.manifest), manifest);
}

function invalid(path: string, what: string, cause?: unknown): UserError {
  return new UserError('INVALID_MODEL', `${path}: ${what}`, { cause });
}

async function readJsonFile<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw invalid(path, `not readable JSON (${(err as Error).message})`, err);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success)
    throw invalid(path, `invalid content: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
  return parsed.data;
}

/**
 * Checks a package without loading the model: manifest format, presence and sha256 of every listed
 * file, required files, JSON schemas, size consistency. Throws UserError('INVALID_MODEL') naming the
 * file and what is wrong.
 */
export async function validateModelPackage(
  dir: string,
  opts: { requireCalibration?: boolean } = {},
): Promise<Omit<LoadedPackage, 'model'>> {
  const requireCalibration = opts.requireCalibration ?? true;
  const manifestPath = join(dir, PACKAGE_FILES.manifest);
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw invalid(dir, 'not a folder (expected a model package folder)');
  if (!(await stat(manifestPath).catch(() => null))) {
    throw invalid(
      manifestPath,
      'missing: this folder is not a model package (the checkpoint step exports one)',
    );
  }
  let rawManifest: unknown;
  try {
    rawManifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (err) {
    throw invalid(manifestPath, `not readable JSON (${(err as Error).message})`, err);
  }
  const version = (rawManifest as { formatVersion?: unknown } | null)?.formatVersion;
  if (typeof version === 'number' && version !== PACKAGE_FORMAT_VERSION) {
    throw invalid(
      manifestPath,
      `package format version ${version} is not supported (this version reads ${PACKAGE_FORMAT_VERSION}); re-export the model`,
    );
  }
  const mParsed = manifestSchema.safeParse(rawManifest);
  if (!mParsed.success) {
    throw invalid(manifestPath, `invalid manifest: ${z.prettifyError(mParsed.error).replace(/\n/g, '; ')}`);
  }
  const manifest = mParsed.data;
  const kindFiles = MODEL_FILES[packageKind(manifest.files)];
  for (const name of [...kindFiles, ...REQUIRED_FILES]) {
    if (!manifest.files[name]) throw invalid(join(dir, name), 'required file is not listed in manifest.json');
  }
  for (const [name, entry] of Object.entries(manifest.files)) {
    const p = join(dir, name);
    const fst = await stat(p).catch(() => null);
    if (!fst) throw invalid(p, 'missing (listed in manifest.json)');
    const actual = await sha256File(p);
    if (actual !== entry.sha256) {
      throw invalid(
        p,
        `checksum mismatch (sha256 ${actual.slice(0, 12)}…, manifest.json says ${entry.sha256.slice(0, 12)}…): the file was modified or truncated after export`,
      );
    }
  }
  const preprocess = await readJsonFile(join(dir, PACKAGE_FILES.preprocess), preprocessSchema);
  const metadata = await readJsonFile(join(dir, PACKAGE_FILES.metadata), metadataSchema);
  // Typed as ./calibration's Calibration: tsc then proves the schema yields one.
  let calibration: Calibration | null = null;
  const calPath = join(dir, PACKAGE_FILES.calibration);
  if (manifest.files[PACKAGE_FILES.calibration]) {
    calibration = await readJsonFile(calPath, calibrationSchema);
    if (calibration.imageSize !== preprocess.imageSize) {
      throw invalid(
        calPath,
        `calibrated at ${calibration.imageSize} px but preprocess.json says ${preprocess.imageSize} px`,
      );
    }
  } else if (requireCalibration) {
    throw invalid(
      calPath,
      "missing: this package has no calibration (thresholds), like the checkpoint step's; serve the package step's copy (<run>/<category>/package/package), sealed with the threshold step's calibration",
    );
  }
  const metrics = manifest.files[PACKAGE_FILES.metrics]
    ? await readJsonFile(join(dir, PACKAGE_FILES.metrics), z.record(z.string(), jsonValue))
    : null;
  return { dir, manifest, metadata, preprocess, calibration, metrics };
}

/** Validates and loads a package (model on the current tfjs backend). */
export async function loadModelPackage(
  dir: string,
  opts: { requireCalibration?: boolean } = {},
): Promise<LoadedPackage> {
  const info = await validateModelPackage(dir, opts);
  const kind = packageKind(info.manifest.files);
  if (kind !== 'autoencoder') {
    const m = kind === 'patchcore' ? await loadPatchcore(dir) : await loadDraem(dir);
    if (m.imageSize !== info.preprocess.imageSize)
      throw invalid(
        join(dir, MODEL_FILES[kind][1]),
        `model input is ${m.imageSize} px but preprocess.json says ${info.preprocess.imageSize} px`,
      );
    return { ...info, model: m };
  }
  const model = await loadModel(dir);
  const shape = model.inputs[0].shape;
  if (shape[1] !== info.preprocess.imageSize || shape[2] !== info.preprocess.imageSize) {
    model.dispose();
    throw invalid(
      join(dir, MODEL_JSON),
      `model input is [${shape.join(', ')}] but preprocess.json says ${info.preprocess.imageSize} px`,
    );
  }
  return { ...info, model };
}
