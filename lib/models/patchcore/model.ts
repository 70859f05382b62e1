/**
 * A fitted PatchCore detector on disk: `patchcore.onnx` (the whole scoring graph: backbone, patch
 * features, memory bank, map and score; lib/models/patchcore/graphs) and `patchcore.json` (what it is:
 * backbone and its licence, stages, bank size, fit facts). Self-contained: scoring needs neither the
 * backbone package nor Python.
 */
import { z } from 'zod';
import { jsonValueSchema } from '../../util/json';
import { hasDetectorFile, loadDetectorFiles, OnnxDetector, saveDetectorFiles } from '../onnx-detector';

export const PATCHCORE_ONNX = 'patchcore.onnx';
export const PATCHCORE_JSON = 'patchcore.json';

export const patchcoreInfoSchema = z.object({
  kind: z.literal('patchcore'),
  imageSize: z.number().int().positive(),
  backbone: z.object({
    name: z.string(),
    /** Where the weights came from and under which licence (recorded, as the licence asks). */
    source: z.record(z.string(), jsonValueSchema),
  }),
  strides: z.array(z.number().int().positive()),
  /** Stride of the patch grid (absent: the finest stage's). */
  patchStride: z.number().int().positive().optional(),
  neighbourhood: z.number().int().positive(),
  featureDim: z.number().int().positive(),
  grid: z.number().int().positive(),
  bankSize: z.number().int().positive(),
  trainPatches: z.number().int().positive(),
  coresetRatio: z.number(),
  projectionDim: z.number().int().positive(),
  smoothingSigma: z.number().min(0),
  onnxSha256: z.string().regex(/^[0-9a-f]{64}$/),
  fit: z.record(z.string(), jsonValueSchema),
});
export type PatchcoreInfo = z.infer<typeof patchcoreInfoSchema>;

/** A loaded detector of the patchcore kind: its scoring graph and description. */
export class PatchcoreModel extends OnnxDetector {
  readonly kind = 'patchcore' as const;
  constructor(
    onnx: Uint8Array,
    readonly info: PatchcoreInfo,
  ) {
    super(onnx);
  }
  get imageSize(): number {
    return this.info.imageSize;
  }
}

const FILES = { onnx: PATCHCORE_ONNX, json: PATCHCORE_JSON };

/** Whether `dir` holds a fitted PatchCore model (its patchcore.json), rather than a tfjs autoencoder. */
export function isPatchcoreDir(dir: string): Promise<boolean> {
  return hasDetectorFile(dir, PATCHCORE_JSON);
}

/** Writes the two files (the graph first: the json, naming its sha256, marks a complete model). */
export function savePatchcore(
  dir: string,
  onnx: Uint8Array,
  info: Omit<PatchcoreInfo, 'onnxSha256'>,
): Promise<PatchcoreInfo> {
  return saveDetectorFiles<PatchcoreInfo>(dir, FILES, onnx, info);
}

export async function loadPatchcore(dir: string): Promise<PatchcoreModel> {
  const { onnx, info } = await loadDetectorFiles(dir, FILES, patchcoreInfoSchema);
  return new PatchcoreModel(onnx, info);
}
