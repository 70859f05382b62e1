/**
 * A trained DRAEM detector on disk: `draem.onnx` (the whole scoring graph: both U-Nets with their
 * weights, map and score; graphs.ts) and `draem.json` (what it is). Self-contained, like PatchCore.
 */
import { z } from 'zod';
import { jsonValueSchema } from '../../util/json';
import { hasDetectorFile, loadDetectorFiles, OnnxDetector, saveDetectorFiles } from '../onnx-detector';

export const DRAEM_ONNX = 'draem.onnx';
export const DRAEM_JSON = 'draem.json';
const FILES = { onnx: DRAEM_ONNX, json: DRAEM_JSON };

export const draemInfoSchema = z.object({
  kind: z.literal('draem'),
  imageSize: z.number().int().positive(),
  reconWidths: z.array(z.number().int().positive()),
  discWidths: z.array(z.number().int().positive()),
  parameters: z.number().int().positive(),
  /** Optimiser steps the weights were trained for. */
  steps: z.number().int().min(0),
  smoothingSigma: z.number().min(0),
  scoreWindow: z.number().int().positive(),
  onnxSha256: z.string().regex(/^[0-9a-f]{64}$/),
  fit: z.record(z.string(), jsonValueSchema),
});
export type DraemInfo = z.infer<typeof draemInfoSchema>;

export class DraemModel extends OnnxDetector {
  readonly kind = 'draem' as const;
  constructor(
    onnx: Uint8Array,
    readonly info: DraemInfo,
  ) {
    super(onnx);
  }
  get imageSize(): number {
    return this.info.imageSize;
  }
}

export function isDraemDir(dir: string): Promise<boolean> {
  return hasDetectorFile(dir, DRAEM_JSON);
}

export function saveDraem(
  dir: string,
  onnx: Uint8Array,
  info: Omit<DraemInfo, 'onnxSha256'>,
): Promise<DraemInfo> {
  return saveDetectorFiles<DraemInfo>(dir, FILES, onnx, info);
}

export async function loadDraem(dir: string): Promise<DraemModel> {
  const { onnx, info } = await loadDetectorFiles(dir, FILES, draemInfoSchema);
  return new DraemModel(onnx, info);
}
