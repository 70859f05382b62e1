/**
 * Training the DRAEM-style detector (lib/models/draem) on ONNX Runtime: per optimiser step, a batch of
 * good training images gets synthetic anomalies (lib/data/anomaly-generator: Perlin regions and thin
 * strokes filled from the image itself, other images, shuffled tiles, procedural textures, colour
 * shifts and blur), and one session runs forward and backward of both U-Nets and the loss; Adam in JS.
 *
 * Budgeted by optimiser steps (draem.steps), not epochs: the 48 images of a small category make 6
 * batches of 8, and an epoch count that suits MVTec's 200-400 images would be a few hundred steps here.
 *
 * Resumable: every `checkpoint_every` steps the parameters, Adam moments, step, RNG state and history
 * go to `<checkpointDir>/step-NNNNNN/` (params.bin + state.json naming its sha256, written atomically,
 * the newest two kept); a new attempt resumes from the newest one that verifies, and continues the
 * exact sequence of batches and anomalies it would have drawn.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DraemConfig } from '../config/schema';
import { generateAnomalies } from '../data/anomaly-generator';
import type { CachedSplit } from '../data/tensor-cache';
import {
  buildTrainGraph,
  type DraemNetworks,
  draemNetworks,
  gradOf,
  LOSS_TERMS,
  paramShapes,
  TRAIN_AUGMENTED,
  TRAIN_CLEAN,
  TRAIN_LOSS,
  TRAIN_MASK,
  termOutput,
} from '../models/draem/graphs';
import { assertImageSize, initParams, type ParamTensor, unetLayers } from '../models/draem/network';
import type { ExecutionProviderChoice } from '../onnx/execution-provider';
import { ortSessionOptions } from '../onnx/session';
import { sha256, writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import { Rng } from '../util/rng';
import { type AdamSlot, adamStep, clipByGlobalNorm } from './adam';

export interface DraemStepRecord {
  step: number;
  loss: number;
  l2: number;
  ssim: number;
  focal: number;
  lr: number;
}

export interface DraemProgress {
  step: number;
  steps: number;
  loss: number;
  imagesPerSec: number;
  etaSec: number;
  checkpoint?: string;
}

export interface DraemTrainOptions {
  train: CachedSplit;
  cfg: DraemConfig;
  seed: number;
  threads: number;
  /** Global-norm gradient clipping (training.grad_clip); null: none. */
  gradClip: number | null;
  checkpointDir: string;
  executionProvider?: Pick<ExecutionProviderChoice, 'provider' | 'deviceId'>;
  signal?: AbortSignal;
  onProgress?: (p: DraemProgress) => void;
  log?: (line: string) => void;
}

export interface DraemTrainResult {
  networks: DraemNetworks;
  params: ParamTensor[];
  steps: number;
  history: DraemStepRecord[];
  resumedFrom: string | null;
  lastCheckpoint: string | null;
  trainSeconds: number;
  imagesPerSec: number;
  parameters: number;
}

export class DraemTrainingCancelled extends Error {
  constructor(readonly checkpoint: string | null) {
    super(`draem training cancelled${checkpoint ? `; state saved in ${checkpoint}` : ''}`);
    this.name = 'DraemTrainingCancelled';
  }
}

const STATE_JSON = 'state.json';
const PARAMS_BIN = 'params.bin';
const STATE_FORMAT = 'anomaly-spotter-draem-checkpoint/1';
const KEEP_CHECKPOINTS = 2;
/** History gets one record per this many steps (means over them). */
const HISTORY_EVERY = 10;

interface SavedState {
  format: string;
  step: number;
  rngState: number;
  history: DraemStepRecord[];
  /** Sums of the steps since the last history record, so a resumed run records the same means. */
  pending: LossSums;
  params: { name: string; shape: number[] }[];
  paramsSha256: string;
}

interface LossSums {
  loss: number;
  l2: number;
  ssim: number;
  focal: number;
  n: number;
}

/** Cosine decay from lr to lr/100 over the step budget. */
export function draemLr(cfg: DraemConfig, step: number): number {
  const t = Math.min(1, step / Math.max(1, cfg.steps));
  const min = cfg.lr / 100;
  return min + 0.5 * (cfg.lr - min) * (1 + Math.cos(Math.PI * t));
}

const stepName = (step: number) => `step-${String(step).padStart(6, '0')}`;

async function saveState(
  dir: string,
  step: number,
  rng: Rng,
  history: DraemStepRecord[],
  pending: LossSums,
  slots: (AdamSlot & ParamTensor)[],
) {
  const total = slots.reduce((s, p) => s + p.value.length * 3, 0);
  const bin = new Float32Array(total);
  let off = 0;
  for (const p of slots)
    for (const a of [p.value, p.m, p.v]) {
      bin.set(a, off);
      off += a.length;
    }
  const bytes = new Uint8Array(bin.buffer);
  // params.bin first: the state naming its sha256 marks a complete checkpoint.
  await writeFileAtomic(join(dir, PARAMS_BIN), bytes);
  const state: SavedState = {
    format: STATE_FORMAT,
    step,
    rngState: rng.state,
    history,
    pending: { ...pending },
    params: slots.map((p) => ({ name: p.name, shape: p.shape })),
    paramsSha256: sha256(bytes),
  };
  await writeJsonAtomic(join(dir, STATE_JSON), state);
}

/** The newest checkpoint under `root` that verifies against these parameter shapes, or null. */
async function loadLatest(
  root: string,
  shapes: { name: string; shape: number[] }[],
  log: (line: string) => void,
): Promise<{ dir: string; state: SavedState; bin: Float32Array } | null> {
  const names = (await readdir(root).catch(() => [] as string[]))
    .filter((n) => /^step-\d{6}$/.test(n))
    .sort()
    .reverse();
  for (const n of names) {
    const dir = join(root, n);
    try {
      const state = JSON.parse(await readFile(join(dir, STATE_JSON), 'utf8')) as SavedState;
      if (state.format !== STATE_FORMAT) throw new Error(`format ${state.format}`);
      if (JSON.stringify(state.params) !== JSON.stringify(shapes))
        throw new Error('its networks differ from the configured ones');
      const buf = await readFile(join(dir, PARAMS_BIN));
      if (sha256(buf) !== state.paramsSha256) throw new Error(`${PARAMS_BIN} checksum mismatch`);
      const bin = new Float32Array(buf.byteLength / 4);
      new Uint8Array(bin.buffer).set(buf);
      return { dir, state, bin };
    } catch (err) {
      log(`draem: checkpoint ${dir} unusable (${(err as Error).message}); trying an older one`);
    }
  }
  return null;
}

export async function trainDraem(opts: DraemTrainOptions): Promise<DraemTrainResult> {
  const { train, cfg } = opts;
  const log = opts.log ?? (() => {});
  if (train.count === 0)
    throw new UserError('INVALID_DATASET', 'draem: the training split has no images to train on');
  const s = train.size;
  for (const [key, widths] of [
    ['model.draem.recon_widths', cfg.recon_widths],
    ['model.draem.disc_widths', cfg.disc_widths],
  ] as const) {
    try {
      assertImageSize(s, widths);
    } catch (err) {
      throw new UserError('INVALID_CONFIG', `${key}: ${(err as Error).message}`);
    }
  }
  const networks = draemNetworks(s, cfg.recon_widths, cfg.disc_widths);
  const shapes = paramShapes(networks);
  const rng = new Rng(opts.seed);
  const init = initParams(
    [...unetLayers(networks.reconstructive), ...unetLayers(networks.discriminative)],
    rng,
  );
  const slots: (AdamSlot & ParamTensor)[] = init.map((p) => ({
    ...p,
    m: new Float32Array(p.value.length),
    v: new Float32Array(p.value.length),
  }));
  let step = 0;
  let history: DraemStepRecord[] = [];
  let resumedFrom: string | null = null;
  const acc: LossSums = { loss: 0, l2: 0, ssim: 0, focal: 0, n: 0 };
  const latest = await loadLatest(opts.checkpointDir, shapes, log);
  if (latest) {
    let off = 0;
    for (const p of slots)
      for (const a of [p.value, p.m, p.v]) {
        a.set(latest.bin.subarray(off, off + a.length));
        off += a.length;
      }
    step = latest.state.step;
    rng.state = latest.state.rngState;
    history = latest.state.history;
    Object.assign(acc, latest.state.pending);
    resumedFrom = latest.dir;
    log(`draem: resumed from ${latest.dir} at step ${step}/${cfg.steps}`);
  }

  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(
    buildTrainGraph(networks, {
      l2: cfg.l2_weight,
      ssim: cfg.ssim_weight,
      focal: cfg.focal_weight,
      focalGamma: cfg.focal_gamma,
    }),
    ortSessionOptions({ threads: opts.threads, executionProvider: opts.executionProvider }),
  );
  const b = Math.min(cfg.batch_size, Math.max(1, train.count));
  const px = s * s * 3;
  const t0 = performance.now();
  const startStep = step;
  let lastCheckpoint: string | null = latest?.dir ?? null;
  const checkpoint = async () => {
    const dir = join(opts.checkpointDir, stepName(step));
    await saveState(dir, step, rng, history, acc, slots);
    lastCheckpoint = dir;
    const all = (await readdir(opts.checkpointDir)).filter((n) => /^step-\d{6}$/.test(n)).sort();
    for (const old of all.slice(0, -KEEP_CHECKPOINTS))
      await rm(join(opts.checkpointDir, old), { recursive: true, force: true });
  };
  try {
    while (step < cfg.steps) {
      if (opts.signal?.aborted) {
        await checkpoint();
        throw new DraemTrainingCancelled(lastCheckpoint);
      }
      const clean = new Float32Array(b * px);
      for (let i = 0; i < b; i++) {
        const k = rng.int(train.count);
        const src = train.images.subarray(k * px, (k + 1) * px);
        for (let j = 0; j < px; j++) clean[i * px + j] = src[j] / 255;
      }
      const { images, masks } = generateAnomalies(clean, b, s, { probability: cfg.anomaly_probability }, rng);
      const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
        [TRAIN_AUGMENTED]: new ort.Tensor('float32', images, [b, s, s, 3]),
        [TRAIN_CLEAN]: new ort.Tensor('float32', clean, [b, s, s, 3]),
        [TRAIN_MASK]: new ort.Tensor('float32', masks, [b, s, s]),
      };
      for (const p of slots) feeds[p.name] = new ort.Tensor('float32', p.value, p.shape);
      const out = await session.run(feeds);
      const loss = (out[TRAIN_LOSS].data as Float32Array)[0];
      if (!Number.isFinite(loss))
        throw new Error(`draem: the loss is ${loss} at step ${step + 1}; lower model.draem.lr`);
      const grads = slots.map((p) => out[gradOf(p.name)].data as Float32Array);
      if (opts.gradClip !== null) clipByGlobalNorm(grads, opts.gradClip);
      const lr = draemLr(cfg, step);
      adamStep(slots, grads, lr, step);
      step++;
      acc.loss += loss;
      for (const t of LOSS_TERMS) acc[t] += (out[termOutput(t)].data as Float32Array)[0];
      acc.n++;
      if (acc.n === HISTORY_EVERY || step === cfg.steps) {
        history.push({
          step,
          loss: acc.loss / acc.n,
          l2: acc.l2 / acc.n,
          ssim: acc.ssim / acc.n,
          focal: acc.focal / acc.n,
          lr,
        });
        Object.assign(acc, { loss: 0, l2: 0, ssim: 0, focal: 0, n: 0 });
      }
      if (step % cfg.checkpoint_every === 0 || step === cfg.steps) await checkpoint();
      const secs = (performance.now() - t0) / 1000;
      const rate = (step - startStep) / Math.max(secs, 1e-9);
      opts.onProgress?.({
        step,
        steps: cfg.steps,
        loss,
        imagesPerSec: rate * b,
        etaSec: (cfg.steps - step) / Math.max(rate, 1e-9),
        checkpoint: lastCheckpoint ?? undefined,
      });
    }
  } finally {
    await session.release();
  }
  const trainSeconds = (performance.now() - t0) / 1000;
  return {
    networks,
    params: slots.map(({ name, shape, value }) => ({ name, shape, value })),
    steps: step,
    history,
    resumedFrom,
    lastCheckpoint,
    trainSeconds,
    imagesPerSec: ((step - startStep) * b) / Math.max(trainSeconds, 1e-9),
    parameters: slots.reduce((n, p) => n + p.value.length, 0),
  };
}
