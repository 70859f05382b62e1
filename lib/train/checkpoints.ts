/**
 * Training checkpoints: one folder per checkpoint (`epoch-0007/`, `best/`), written as a temp folder
 * and renamed into place, with `checkpoint.json` (written last) carrying the sha256 and size of every
 * file. A folder whose files do not match its checkpoint.json is corrupt and skipped on resume.
 *
 *   <name>/model/model.json, weights.bin   the network (lib/model/io format)
 *   <name>/optimizer.bin, optimizer.json   optimizer variables (Adam moments + iterations), in order
 *   <name>/state.json                      epoch, schedule, early stopping, RNG, history, config hash
 *   <name>/checkpoint.json                 manifest with checksums (the commit point inside the folder)
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadModel, saveModel } from '../model/io';
import { sha256File, writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import type { EarlyStoppingState } from './early-stopping';
import type { LrScheduleState } from './schedule';

export const CHECKPOINT_MANIFEST = 'checkpoint.json';
export const BEST_CHECKPOINT = 'best';
const FORMAT = 'anomaly-spotter-checkpoint/1';

export interface EpochRecord {
  epoch: number;
  lr: number;
  loss: number;
  terms: Record<string, number>;
  valLoss: number;
  imagesPerSec: number;
  seconds: number;
}

/** Where an interrupted epoch stopped, so a resume continues it with the same order and RNG. */
export interface PartialEpoch {
  epoch: number;
  nextBatch: number;
  order: number[];
  rngState: number;
  lossSum: number;
  termSums: Record<string, number>;
  seen: number;
  seconds: number;
}

export interface TrainState {
  /** Number of completed epochs. */
  epoch: number;
  totalEpochs: number;
  rngState: number;
  schedule: LrScheduleState;
  early: EarlyStoppingState;
  history: EpochRecord[];
  partial: PartialEpoch | null;
  configHash: string;
}

interface Manifest {
  format: string;
  createdAt: string;
  epoch: number;
  files: { path: string; sha256: string; bytes: number }[];
}

export function epochCheckpointName(epoch: number): string {
  return `epoch-${String(epoch).padStart(4, '0')}`;
}

async function filesBelow(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesBelow(p, base)));
    else out.push(relative(base, p));
  }
  return out.sort();
}

/**
 * Writes a checkpoint folder `<root>/<name>` atomically (replacing an existing one of that name,
 * e.g. `best`). Returns its path.
 */
export async function saveCheckpoint(
  root: string,
  name: string,
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  state: TrainState,
): Promise<string> {
  const final = join(root, name);
  const tmp = join(root, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await saveModel(model, join(tmp, 'model'));
    const named = await optimizer.getWeights();
    const { data, specs } = await tf.io.encodeWeights(named);
    // getWeights() returns the live moment variables plus a fresh iterations scalar (first entry).
    named[0]?.tensor.dispose();
    await writeFileAtomic(join(tmp, 'optimizer.bin'), new Uint8Array(data));
    await writeJsonAtomic(join(tmp, 'optimizer.json'), { specs });
    await writeJsonAtomic(join(tmp, 'state.json'), state);
    const files = await Promise.all(
      (await filesBelow(tmp)).map(async (path) => ({
        path,
        sha256: await sha256File(join(tmp, path)),
        bytes: (await stat(join(tmp, path))).size,
      })),
    );
    const manifest: Manifest = {
      format: FORMAT,
      createdAt: new Date().toISOString(),
      epoch: state.epoch,
      files,
    };
    await writeJsonAtomic(join(tmp, CHECKPOINT_MANIFEST), manifest);
    // Replace: move the old folder aside first (rename over a non-empty folder fails).
    const old = join(root, `.${name}.${randomBytes(4).toString('hex')}.old`);
    const hadOld = await rename(final, old).then(
      () => true,
      () => false,
    );
    try {
      await rename(tmp, final);
    } catch (err) {
      // Put the previous folder (e.g. `best`) back: a failed save never loses the last good one.
      if (hadOld) await rename(old, final).catch(() => {});
      throw err;
    }
    if (hadOld) await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return final;
}

/** Checks every file of a checkpoint against its manifest; returns null when valid, else why not. */
export async function verifyCheckpoint(dir: string): Promise<string | null> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, CHECKPOINT_MANIFEST), 'utf8')) as Manifest;
  } catch (err) {
    return `${CHECKPOINT_MANIFEST} missing or unreadable (${(err as Error).message})`;
  }
  if (manifest.format !== FORMAT || !Array.isArray(manifest.files)) return `unknown checkpoint format`;
  for (const f of manifest.files) {
    const p = join(dir, f.path);
    const st = await stat(p).catch(() => null);
    if (!st) return `${f.path} missing`;
    if (st.size !== f.bytes) return `${f.path} has ${st.size} bytes, expected ${f.bytes}`;
    if ((await sha256File(p)) !== f.sha256) return `${f.path} checksum mismatch`;
  }
  return null;
}

/** Epoch checkpoint folders under root, newest first. */
export async function listEpochCheckpoints(root: string): Promise<string[]> {
  const names = await readdir(root).catch(() => [] as string[]);
  return names
    .filter((n) => /^epoch-\d+$/.test(n))
    .sort()
    .reverse()
    .map((n) => join(root, n));
}

/**
 * The newest valid epoch checkpoint (a corrupt or truncated newer one is skipped, with a warning
 * through `warn`), or null when there is none.
 */
export async function findLatestValidCheckpoint(
  root: string,
  warn: (msg: string) => void,
): Promise<string | null> {
  for (const dir of await listEpochCheckpoints(root)) {
    const problem = await verifyCheckpoint(dir);
    if (problem === null) return dir;
    warn(`checkpoint ${dir} is corrupt (${problem}); falling back to the previous one`);
  }
  return null;
}

/** Loads a checkpoint into an existing model (same architecture) and optimizer; returns its state. */
export async function loadCheckpoint(
  dir: string,
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
): Promise<TrainState> {
  const problem = await verifyCheckpoint(dir);
  if (problem) throw new UserError('CHECKPOINT_CORRUPT', `checkpoint ${dir}: ${problem}`);
  const saved = await loadModel(join(dir, 'model'));
  try {
    const weights = saved.getWeights();
    if (weights.length !== model.getWeights().length) {
      throw new UserError('CHECKPOINT_CORRUPT', `checkpoint ${dir}: model has a different architecture`);
    }
    model.setWeights(weights);
  } finally {
    saved.dispose();
  }
  const { specs } = JSON.parse(await readFile(join(dir, 'optimizer.json'), 'utf8')) as {
    specs: tf.io.WeightsManifestEntry[];
  };
  const buf = await readFile(join(dir, 'optimizer.bin'));
  const map = tf.io.decodeWeights(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), specs);
  // Optimizers restore by position (Adam: iterations, all first moments, all second moments).
  await optimizer.setWeights(specs.map((s) => ({ name: s.name, tensor: map[s.name] })));
  for (const t of Object.values(map)) t.dispose();
  return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as TrainState;
}

/** Deletes all but the newest `keepLast` epoch checkpoints (`best/` is never touched). */
export async function pruneCheckpoints(root: string, keepLast: number): Promise<void> {
  const all = await listEpochCheckpoints(root);
  for (const dir of all.slice(keepLast)) await rm(dir, { recursive: true, force: true });
}
