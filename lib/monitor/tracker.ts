import { EventFileWriter } from './event-writer';
import type { Logger } from './logger';
import { MlflowSink } from './mlflow-sink';

export type RunStatus = 'FINISHED' | 'FAILED' | 'KILLED';

/**
 * What the trainer reports to. Never throws because of MLflow: TensorBoard files are the record
 * of truth, MLflow a best-effort mirror. A failing local disk (event file) does reject, since the
 * run folder is broken then anyway.
 */
export interface RunTracker {
  logParams(params: Record<string, string | number | boolean>): Promise<void>;
  /** e.g. loss/mse, loss/ssim, lr, images_per_sec, val/loss. */
  logScalars(step: number, scalars: Record<string, number>): Promise<void>;
  /** PNG bytes; TensorBoard images, and MLflow artifacts `images/<tag>/step_<step>.png`. */
  logImages(step: number, images: { tag: string; png: Uint8Array }[]): Promise<void>;
  /**
   * A resumed run logs again from `step` on: TensorBoard drops the previous attempt's points from
   * that step (SessionLog START). MLflow keeps both (its metric history is append-only).
   */
  markResumed(step: number): Promise<void>;
  /** Uploaded to MLflow only (TensorBoard has no artifacts); `artifactPath` defaults to the file name. */
  logArtifacts(files: { path: string; artifactPath?: string }[]): Promise<void>;
  /** Idempotent. Waits a bounded time for MLflow to catch up. */
  close(status: RunStatus): Promise<void>;
  /** The event file being written (for logs and reports). */
  readonly eventFile: string;
}

export interface RunTrackerOptions {
  /** TensorBoard event directory, e.g. `<runDir>/<category>/<step>/tensorboard`. */
  logDir: string;
  /** MLflow run name; also the key that makes a retried attempt continue the same MLflow run. */
  runName: string;
  /** MLflow experiment name (created if missing). */
  experiment: string;
  /** Default: process.env.MLFLOW_TRACKING_URI. null or '' disables MLflow. */
  mlflowUri?: string | null;
  /** MLflow run tags, e.g. { category, pipeline, runId }. */
  tags?: Record<string, string>;
  logger?: Logger;
  /** Bound on how long close() waits for MLflow (default 15 s). */
  closeTimeoutMs?: number;
}

export async function createRunTracker(opts: RunTrackerOptions): Promise<RunTracker> {
  const events = await EventFileWriter.create(opts.logDir);
  const uri = opts.mlflowUri === undefined ? process.env.MLFLOW_TRACKING_URI : opts.mlflowUri;
  const mlflow = uri
    ? new MlflowSink({
        trackingUri: uri,
        experiment: opts.experiment,
        runName: opts.runName,
        tags: opts.tags ?? {},
        logger: opts.logger,
      })
    : null;
  opts.logger?.debug({ eventFile: events.path, mlflow: mlflow !== null }, 'run tracker started');
  let closed = false;

  return {
    eventFile: events.path,
    async logParams(params) {
      mlflow?.logParams(params);
      // TensorBoard's scalar/image plugins have no place for params; the trainer's logger and the
      // step result record them, and MLflow shows them as params.
    },
    async logScalars(step, scalars) {
      mlflow?.logMetrics(step, scalars);
      await events.addScalars(step, scalars);
    },
    async logImages(step, images) {
      await events.addImages(step, images); // first: it rejects non-PNG bytes before anything is queued
      for (const { tag, png } of images) {
        mlflow?.logArtifactBytes(`images/${safePath(tag)}/step_${step}.png`, png);
      }
    },
    async markResumed(step) {
      await events.restartAt(step, `resumed; steps from ${step} on replace the previous attempt's`);
    },
    async logArtifacts(files) {
      for (const f of files) mlflow?.logArtifactFile(f.path, f.artifactPath);
    },
    async close(status) {
      if (closed) return;
      closed = true;
      await Promise.all([events.close(), mlflow?.close(status, opts.closeTimeoutMs)]);
    },
  };
}

/** A tag like `recon/sample 0` as one artifact folder name. */
function safePath(tag: string): string {
  return tag.replace(/[^A-Za-z0-9._-]+/g, '_');
}
