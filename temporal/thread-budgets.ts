/**
 * The supervisor's side of the thread handover (lib/train/thread-budget): which children run a
 * training now, and each one's share of the host's cores, sent over IPC whenever a training starts
 * or ends (or its child dies).
 */
import { threadsPerTraining } from '../lib/train/thread-budget';

export interface ThreadBudgetMessage {
  kind: 'thread-budget';
  threads: number;
}

export function isThreadBudgetMessage(value: unknown): value is ThreadBudgetMessage {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { kind?: unknown; threads?: unknown };
  return v.kind === 'thread-budget' && typeof v.threads === 'number' && v.threads >= 1;
}

/** Busy training children (by any key, e.g. the ChildProcess) and what to tell them. */
export class ThreadBudgets<K> {
  private readonly busy = new Map<K, Set<string>>();
  private sent = new Map<K, number>();

  constructor(private readonly cores: number) {}

  /** A child started (true) or ended (false) an activity; only `train` activities count. */
  update(child: K, taskToken: string, activityType: string | null, started: boolean): void {
    const tokens = this.busy.get(child) ?? new Set<string>();
    if (started && activityType === 'train') tokens.add(taskToken);
    else tokens.delete(taskToken);
    if (tokens.size > 0) this.busy.set(child, tokens);
    else this.busy.delete(child);
  }

  /** The child is gone: it trains nothing any more. */
  remove(child: K): void {
    this.busy.delete(child);
    this.sent.delete(child);
  }

  /** The messages to send now: each busy child whose share changed since it was last told. */
  changes(): Array<{ child: K; message: ThreadBudgetMessage }> {
    const threads = threadsPerTraining(this.cores, this.busy.size);
    const out: Array<{ child: K; message: ThreadBudgetMessage }> = [];
    const next = new Map<K, number>();
    for (const child of this.busy.keys()) {
      next.set(child, threads);
      if (this.sent.get(child) !== threads) out.push({ child, message: { kind: 'thread-budget', threads } });
    }
    this.sent = next;
    return out;
  }
}
