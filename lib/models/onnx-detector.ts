/**
 * What the model kinds that score with one self-contained ONNX graph share (PatchCore, DRAEM): the
 * graph's input and output names, and a base class, so scoring (lib/infer), packages and serving treat
 * them alike. The autoencoder is not one: it is a tfjs model, exported to ONNX for scoring.
 *   image NHWC [N,S,S,3] in [0,1]  ->  anomaly_map [N,S,S], score [N]
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { sha256, writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';

export const DETECTOR_INPUT = 'image';
export const DETECTOR_MAP = 'anomaly_map';
export const DETECTOR_SCORE = 'score';

export type OnnxDetectorKind = 'patchcore' | 'draem';

/** Display name of a kind, for messages. */
export const DETECTOR_LABEL: Record<OnnxDetectorKind, string> = { patchcore: 'PatchCore', draem: 'DRAEM' };

export abstract class OnnxDetector {
  abstract readonly kind: OnnxDetectorKind;
  constructor(readonly onnx: Uint8Array) {}
  abstract get imageSize(): number;
  /** Nothing native is held until a scoring engine creates its session. */
  dispose(): void {}
}

export function isOnnxDetector(m: unknown): m is OnnxDetector {
  return m instanceof OnnxDetector;
}

/**
 * A detector on disk is two files: `<kind>.onnx` (the whole scoring graph) and `<kind>.json` (what it
 * is, naming the graph's sha256). The graph is written first: the json marks a complete model.
 */
export async function saveDetectorFiles<T extends { onnxSha256: string }>(
  dir: string,
  files: { onnx: string; json: string },
  onnx: Uint8Array,
  info: Omit<T, 'onnxSha256'>,
): Promise<T> {
  const full = { ...info, onnxSha256: sha256(onnx) } as T;
  await writeFileAtomic(join(dir, files.onnx), onnx);
  await writeJsonAtomic(join(dir, files.json), full);
  return full;
}

/** Reads and verifies both files: clear errors naming the file for bad JSON, content or checksum. */
export async function loadDetectorFiles<T extends { onnxSha256: string }>(
  dir: string,
  files: { onnx: string; json: string },
  schema: z.ZodType<T>,
): Promise<{ onnx: Uint8Array; info: T }> {
  const jsonPath = join(dir, files.json);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(jsonPath, 'utf8'));
  } catch (err) {
    throw new UserError('INVALID_MODEL', `${jsonPath}: not readable JSON (${(err as Error).message})`, {
      cause: err,
    });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success)
    throw new UserError(
      'INVALID_MODEL',
      `${jsonPath}: invalid content: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`,
    );
  const onnxPath = join(dir, files.onnx);
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
      `${onnxPath}: checksum mismatch with ${files.json}: the file was modified or truncated`,
    );
  return { onnx, info: parsed.data };
}

/** Whether `dir` holds a detector's json. */
export async function hasDetectorFile(dir: string, json: string): Promise<boolean> {
  return (await stat(join(dir, json)).catch(() => null)) !== null;
}
