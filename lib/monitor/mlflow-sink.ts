import { basename } from 'node:path';
import type { Logger } from './logger';
import {
  BATCH_LIMITS,
  MlflowClient,
  MlflowHttpError,
  type MlflowMetric,
  type MlflowRunInfo,
  redact,
} from './mlflow-client';

/** Tag on every run we create; a retried attempt finds and continues its run through it. */
export const RUN_KEY_TAG = 'anomaly_spotter.run_key';

type Op =
  | { kind: 'params'; params: { key: string; value: string }[] }
  | { kind: 'metrics'; metrics: MlflowMetric[] }
  | { kind: 'artifact'; artifactPath: string; file?: string; data?: Uint8Array }
  | { kind: 'terminate'; status: 'FINISHED' | 'FAILED' | 'KILLED' };

export interface MlflowSinkOptions {
  trackingUri: string;
  experiment: string;
  runName: string;
  tags: Record<string, string>;
  logger?: Logger;
  /** After a failure, calls pause this long before one retry (the queue keeps filling meanwhile). */
  cooldownMs?: number;
  /** Queued operations beyond this are dropped, oldest metrics first (memory stays bounded while the server is down). */
  maxQueue?: number;
  client?: MlflowClient;
}

/**
 * Sends tracking data to MLflow in the background, so training never waits on the network and
 * never fails because of it: every public method only queues and returns. One drain loop sends
 * the queue in order. A transport failure (refused, timeout, 5xx) warns once with URI and reason,
 * then pauses sending for `cooldownMs` and retries later with everything queued meanwhile; a
 * request the server rejects as invalid (4xx) is dropped with a warning, since resending cannot help.
 */
export class MlflowSink {
  private readonly queue: Op[] = [];
  private run: MlflowRunInfo | null = null;
  private draining: Promise<void> | null = null;
  private pausedUntil = 0;
  private warnedDown = false;
  private readonly warnedRejected = new Set<Op['kind']>();
  private dropped = 0;
  private readonly cooldownMs: number;
  private readonly maxQueue: number;
  private readonly client: MlflowClient | null;
  private readonly uri: string;

  constructor(private readonly opts: MlflowSinkOptions) {
    this.cooldownMs = opts.cooldownMs ?? 30_000;
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.uri = redact(opts.trackingUri);
    let client: MlflowClient | null = null;
    try {
      client = opts.client ?? new MlflowClient(opts.trackingUri);
    } catch (err) {
      opts.logger?.warn(
        { mlflowUri: this.uri, reason: String(err) },
        'MLflow tracking disabled: bad tracking URI',
      );
    }
    this.client = client;
  }

  /** The MLflow run, once created (null while the server has not been reached). */
  get runInfo(): MlflowRunInfo | null {
    return this.run;
  }

  logParams(params: Record<string, string | number | boolean>): void {
    const list = Object.entries(params).map(([key, value]) => ({ key, value: String(value) }));
    for (let i = 0; i < list.length; i += BATCH_LIMITS.params) {
      this.enqueue({ kind: 'params', params: list.slice(i, i + BATCH_LIMITS.params) });
    }
  }

  logMetrics(step: number, scalars: Record<string, number>): void {
    const timestamp = Date.now();
    const metrics = Object.entries(scalars).map(([key, value]) => ({ key, value, timestamp, step }));
    if (metrics.length > 0) this.enqueue({ kind: 'metrics', metrics });
  }

  logArtifactFile(file: string, artifactPath?: string): void {
    this.enqueue({ kind: 'artifact', file, artifactPath: artifactPath ?? basename(file) });
  }

  logArtifactBytes(artifactPath: string, data: Uint8Array): void {
    this.enqueue({ kind: 'artifact', data, artifactPath });
  }

  /**
   * Queues the terminal status and waits (at most `timeoutMs`) for the queue to drain, retrying
   * once regardless of the cooldown. Never throws; leftovers are reported in one warning.
   */
  async close(status: 'FINISHED' | 'FAILED' | 'KILLED', timeoutMs = 15_000): Promise<void> {
    if (!this.client) return;
    this.enqueue({ kind: 'terminate', status });
    const drained = (async () => {
      await this.draining; // whatever is in flight (drain never rejects)
      this.pausedUntil = 0; // one more try even if the server was marked down moments ago
      await this.kick();
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([drained.then(() => 'done' as const), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout' || this.queue.length > 0 || this.dropped > 0) {
      this.opts.logger?.warn(
        { mlflowUri: this.uri, unsent: this.queue.length, dropped: this.dropped, runId: this.run?.runId },
        'MLflow: some tracking data was not sent (TensorBoard event files have everything)',
      );
    }
    this.queue.length = 0; // a late drain must not keep sending after close
  }

  private enqueue(op: Op): void {
    if (!this.client) return;
    this.queue.push(op);
    if (this.queue.length > this.maxQueue) {
      const i = this.queue.findIndex((o) => o.kind === 'metrics' || o.kind === 'artifact');
      this.queue.splice(Math.max(i, 0), 1);
      this.dropped++;
    }
    this.kick();
  }

  private kick(): Promise<void> | null {
    if (this.draining) return this.draining;
    if (Date.now() < this.pausedUntil || this.queue.length === 0) return null;
    this.draining = this.drain().finally(() => {
      this.draining = null;
    });
    return this.draining;
  }

  private async drain(): Promise<void> {
    const client = this.client!;
    while (this.queue.length > 0) {
      const op = this.queue[0];
      try {
        const run = this.run ?? (await this.startRun(client));
        await this.send(client, run, op);
        if (this.warnedDown && this.pausedUntil > 0) {
          this.opts.logger?.info({ mlflowUri: this.uri }, 'MLflow tracking server reachable again');
        }
        this.pausedUntil = 0;
      } catch (err) {
        if (err instanceof MlflowHttpError && err.permanent && this.run) {
          // Once per kind of request: a bad metric key would otherwise warn every epoch.
          const level = this.warnedRejected.has(op.kind) ? 'debug' : 'warn';
          this.warnedRejected.add(op.kind);
          this.opts.logger?.[level](
            { mlflowUri: this.uri, op: op.kind, reason: err.message },
            'MLflow rejected a request; dropped',
          );
        } else {
          if (!this.warnedDown) {
            this.warnedDown = true;
            this.opts.logger?.warn(
              { mlflowUri: this.uri, reason: err instanceof Error ? err.message : String(err) },
              'MLflow tracking server unavailable; training continues, will retry in the background',
            );
          } else {
            this.opts.logger?.debug({ mlflowUri: this.uri, reason: String(err) }, 'MLflow still unavailable');
          }
          this.pausedUntil = Date.now() + this.cooldownMs;
          return; // keep the op; the next enqueue after the cooldown retries
        }
      }
      this.queue.shift();
      if (op.kind === 'metrics') this.coalesceMetrics();
    }
  }

  /** While the server was down, metric ops pile up; send them as few log-batch calls as the limit allows. */
  private coalesceMetrics(): void {
    while (this.queue.length > 1 && this.queue[0].kind === 'metrics' && this.queue[1].kind === 'metrics') {
      const [a, b] = this.queue as [Extract<Op, { kind: 'metrics' }>, Extract<Op, { kind: 'metrics' }>];
      if (a.metrics.length + b.metrics.length > BATCH_LIMITS.metrics) return;
      this.queue.splice(0, 2, { kind: 'metrics', metrics: [...a.metrics, ...b.metrics] });
    }
  }

  private async startRun(client: MlflowClient): Promise<MlflowRunInfo> {
    const experimentId = await client.getOrCreateExperiment(this.opts.experiment);
    const existing = await client.findRunByTag(experimentId, RUN_KEY_TAG, this.opts.runName);
    if (existing) {
      // A retried activity attempt continues the same MLflow run instead of scattering one run per attempt.
      if (existing.status !== 'RUNNING') await client.updateRun(existing.runId, 'RUNNING');
      this.run = existing;
    } else {
      this.run = await client.createRun(experimentId, this.opts.runName, {
        ...this.opts.tags,
        [RUN_KEY_TAG]: this.opts.runName,
      });
    }
    this.opts.logger?.info(
      { mlflowUri: this.uri, mlflowRunId: this.run.runId, experimentId, resumed: existing !== null },
      'MLflow run ready',
    );
    return this.run;
  }

  private async send(client: MlflowClient, run: MlflowRunInfo, op: Op): Promise<void> {
    switch (op.kind) {
      case 'params':
        return client.logBatch(run.runId, { params: op.params });
      case 'metrics':
        return client.logBatch(run.runId, { metrics: op.metrics });
      case 'artifact':
        return op.data
          ? client.uploadArtifact(run, op.artifactPath, op.data)
          : client.uploadArtifactFile(run, op.artifactPath, op.file!);
      case 'terminate':
        return client.updateRun(run.runId, op.status);
    }
  }
}
