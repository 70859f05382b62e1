/**
 * Loading a model while another activity of the same worker process is still switching the tfjs
 * backend (a checkpoint step on a host whose first step it is, beside a validate step that selects
 * the backend): the load waits for the backend instead of failing with "has not yet been initialized".
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, expect, it } from 'vitest';
import { loadModel, saveModel } from '../lib/model/io';
import { buildUNetLite } from '../lib/models/autoencoder/unet';

let dir: string;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('loadModel waits for a backend switch that is still in progress', async () => {
  dir = await mkdtemp(join(tmpdir(), 'io-backend-'));
  await tf.setBackend('cpu');
  const model = buildUNetLite({ imageSize: 16, widths: [4], seed: 1 });
  await saveModel(model, dir);
  const params = model.countParams();
  model.dispose();
  const switching = tf.setBackend('wasm'); // not awaited: what a concurrent activity does
  const loaded = await loadModel(dir);
  expect(tf.getBackend()).toBe('wasm');
  expect(loaded.countParams()).toBe(params);
  loaded.dispose();
  expect(await switching).toBe(true);
});
