import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs';

/**
 * Backend for evaluation-side inference. Interim: wasm (the one backend that works everywhere here);
 * to be replaced by lib/model/backend.ts `selectBackend(pref, 'infer')` once that lands.
 */
export async function useInferenceBackend(): Promise<string> {
  if (tf.getBackend() !== 'wasm') await tf.setBackend('wasm');
  await tf.ready();
  return tf.getBackend();
}
