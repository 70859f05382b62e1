import type { ProgressDetails } from '../lib/steps/contracts';

export { asProgressDetails } from '../lib/steps/contracts';

/** What the throttle needs from the activity context (so it can be tested without a worker). */
export type SendHeartbeat = (details: ProgressDetails) => void;

/**
 * Turns a step's frequent `progress()` calls into heartbeats: at most one per `minIntervalMs`
 * (latest details win), immediately when a new checkpoint is reported (so a retry can resume from
 * it), and a keep-alive with the last details every `keepAliveMs` so steps that report rarely are
 * neither declared dead by the heartbeat timeout nor deaf to cancellation (which only arrives with
 * a heartbeat). The SDK throttles again before talking to the server; this layer keeps per-batch
 * calls from serialising payloads thousands of times.
 */
export class ProgressHeartbeat {
  private latest: ProgressDetails | undefined;
  private lastSentAt = 0;
  private lastCheckpoint: string | undefined;
  private pending: NodeJS.Timeout | undefined;
  private readonly keepAlive: NodeJS.Timeout;

  constructor(
    private readonly send: SendHeartbeat,
    private readonly minIntervalMs: number,
    keepAliveMs: number,
    initial?: ProgressDetails,
  ) {
    this.latest = initial;
    this.lastCheckpoint = initial?.checkpoint;
    this.keepAlive = setInterval(() => this.flush(), keepAliveMs);
    this.keepAlive.unref();
  }

  /** Latest details reported (or the previous attempt's, until the step reports). */
  get current(): ProgressDetails | undefined {
    return this.latest;
  }

  progress(details: ProgressDetails): void {
    this.latest = details;
    const newCheckpoint = details.checkpoint !== undefined && details.checkpoint !== this.lastCheckpoint;
    const due = Date.now() - this.lastSentAt >= this.minIntervalMs;
    if (newCheckpoint || due) {
      this.flush();
    } else if (!this.pending) {
      this.pending = setTimeout(() => this.flush(), this.minIntervalMs - (Date.now() - this.lastSentAt));
      this.pending.unref();
    }
  }

  flush(): void {
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
    this.lastSentAt = Date.now();
    this.lastCheckpoint = this.latest?.checkpoint ?? this.lastCheckpoint;
    try {
      this.send(this.latest ?? { stage: 'running' });
    } catch {
      // Heartbeating after the activity finished throws; progress() must never throw (contract).
    }
  }

  stop(): void {
    clearInterval(this.keepAlive);
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
  }
}
