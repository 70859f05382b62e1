/**
 * What a scoring engine scores: every model kind's loaded form. The autoencoder is a tfjs layers model
 * (scored on tfjs or exported to ONNX Runtime); PatchCore and DRAEM are self-contained ONNX scoring
 * graphs (lib/models/onnx-detector). A new kind adds its loaded form here and its scorer in lib/infer.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ModelKind } from '../config/schema';
import { isDraemDir, loadDraem } from '../models/draem/model';
import { isOnnxDetector, type OnnxDetector } from '../models/onnx-detector';
import { isPatchcoreDir, loadPatchcore } from '../models/patchcore/model';

export type ScorableModel = tf.LayersModel | OnnxDetector;

export function scorableKind(m: ScorableModel): ModelKind {
  return isOnnxDetector(m) ? m.kind : 'autoencoder';
}

/** Input side of a model's images (square). */
export function scorableImageSize(m: ScorableModel): number {
  if (isOnnxDetector(m)) return m.imageSize;
  const s = m.inputs[0].shape[1];
  if (typeof s !== 'number') throw new Error('model input size is not fixed');
  return s;
}

/** Loads the trained model in `dir`, whatever its kind (patchcore.json / draem.json mark those kinds). */
export async function loadScorableModel(dir: string): Promise<ScorableModel> {
  if (await isPatchcoreDir(dir)) return loadPatchcore(dir);
  if (await isDraemDir(dir)) return loadDraem(dir);
  // Loaded on demand: tfjs is heavy, and the ONNX detectors do not need it.
  const { loadModel } = await import('../model/io');
  return loadModel(dir);
}
