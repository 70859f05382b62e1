/**
 * A fitted PatchCore detector on disk: `patchcore.onnx` (the whole scoring graph: backbone, patch
 * features, memory bank, map and score; lib/models/patchcore/graphs) and `patchcore.json` (what it is:
 * backbone and its licence, stages, bank size, fit facts). Self-contained: scoring needs neither the
 * backbone package nor Python.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { sha256, writeFileAtomic, writeJsonAtomic } from '../../util/atomic';
import { UserError } from '../../util/errors';
import { jsonValueSchema } from '../../util/json';

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
export class PatchcoreModel {
  readonly kind = 'patchcore' as const;
  constructor(
    readonly onnx: Uint8Array,
    readonly info: PatchcoreInfo,
  ) {}
  get imageSize(): number {
    return this.info.imageSize;
  }
  /** Nothing native is held until a scoring engine creates its session. */
  dispose(): void {}
}

export function isPatchcoreModel(m: unknown): m is PatchcoreModel {
  return m instanceof PatchcoreModel;
}

/** Whether `dir` holds a fitted PatchCore model (its patchcore.json), rather than a tfjs autoencoder. */
export async function isPatchcoreDir(dir: string): Promise<boolean> {
  return (await stat(join(dir, PATCHCORE_JSON)).catch(() => null)) !== null;
}

/** Writes the two files (the graph first: the json, naming its sha256, marks a complete model). */
export async function savePatchcore(
  dir: string,
  onnx: Uint8Array,
  info: Omit<PatchcoreInfo, 'onnxSha256'>,
): Promise<PatchcoreInfo> {
  const full: PatchcoreInfo = { ...info, onnxSha256: sha256(onnx) };
  await writeFileAtomic(join(dir, PATCHCORE_ONNX), onnx);
  await writeJsonAtomic(join(dir, PATCHCORE_JSON), full);
  return full;
}

export async function loadPatchcore(dir: string): Promise<PatchcoreModel> {
  const jsonPath = join(dir, PATCHCORE_JSON);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(jsonPath, 'utf8'));
  } catch (err) {
    throw new UserError('INVALID_MODEL', `${jsonPath}: not readable JSON (${(err as Error).message})`, {
      cause: err,
    });
  }
  const parsed = patchcoreInfoSchema.safeParse(raw);
  if (!parsed.success)
    throw new UserError(
      'INVALID_MODEL',
      `${jsonPath}: invalid content: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`,
    );
  const onnxPath = join(dir, PATCHCORE_ONNX);
  const onnx = new Uint8Array(
    await readFile(onnxPath).catch((err: Error) => {
      throw new UserError('INVALID_MODEL', `${onnxPath}: missing or unreadable (${err.message})`, {
        cause: err,
      });
    }),
  );
  if (sha256(onnx) !== parsed.data.onnxSha256)
    throw new UserError(
      'INVALID_MODEL',
      `${onnxPath}: checksum mismatch with ${PATCHCORE_JSON}: the file was modified or truncated`,
    );
  return new PatchcoreModel(onnx, parsed.data);
}
