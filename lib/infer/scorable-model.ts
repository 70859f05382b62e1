/**
 * What a scoring engine scores: every model kind's loaded form. The autoencoder is a tfjs layers model
 * (scored on tfjs or exported to ONNX Runtime); PatchCore is its self-contained ONNX scoring graph.
 * A new kind adds its loaded form here and its scorer in lib/infer.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ModelKind } from '../config/schema';
import {
  isPatchcoreDir,
  isPatchcoreModel,
  loadPatchcore,
  type PatchcoreModel,
} from '../models/patchcore/model';

export type ScorableModel = tf.LayersModel | PatchcoreModel;

export function scorableKind(m: ScorableModel): ModelKind {
  return isPatchcoreModel(m) ? 'patchcore' : 'autoencoder';
}

/** Input side of a model's images (square). */
export function scorableImageSize(m: ScorableModel): number {
  if (isPatchcoreModel(m)) return m.imageSize;
  const s = m.inputs[0].shape[1];
  if (typeof s !== 'number') throw new Error('model input size is not fixed');
  return s;
}

/** Loads the trained model in `dir`, whatever its kind (patchcore.json marks a PatchCore model). */
export async function loadScorableModel(dir: string): Promise<ScorableModel> {
  if (await isPatchcoreDir(dir)) return loadPatchcore(dir);
  // Loaded on demand: tfjs is heavy, and PatchCore does not need it.
  const { loadModel } = await import('../model/io');
  return loadModel(dir);
}
