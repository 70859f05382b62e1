/**
 * Per-model inference queue with micro-batching. The wasm backend is single-threaded, so two inferences
 * of one model at once only interleave (both get slower): one batch runs at a time. Requests that arrive
 * while a batch runs are merged into the next one (up to `maxBatch` images), which costs an idle server
 * nothing and raises throughput under load (a batch of 8 costs less per image than 8 batches of 1).
 * The backlog is bounded: overload becomes a fast 503 instead of an ever-growing wait.
 */
export class QueueFullError extends Error {
  constructor(readonly maxPending: number) {
    super(`inference queue is full (${maxPending} requests waiting); retry shortly`);
    this.name = 'QueueFullError';
  }
}

/** Scores a batch: one result per input, in order. */
export type BatchRunner<I, O> = (inputs: I[]) => Promise<O[]>;

interface Pending<I, O> {
  inputs: I[];
  resolve: (out: O[]) => void;
  reject: (err: unknown) => void;
}

export class BatchingQueue<I, O> {
  private pending: Pending<I, O>[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly runner: BatchRunner<I, O>,
    readonly maxBatch = 8,
    readonly maxPending = 32,
  ) {}

  /** Requests waiting or running. */
  get depth(): number {
    return this.pending.length + (this.running ? 1 : 0);
  }

  run(inputs: I[]): Promise<O[]> {
    if (this.pending.length >= this.maxPending) return Promise.reject(new QueueFullError(this.maxPending));
    const p = new Promise<O[]>((resolve, reject) => {
      this.pending.push({ inputs, resolve, reject });
    });
    this.kick();
    return p;
  }

  private kick(): void {
    if (this.running || this.pending.length === 0) return;
    // Yield to the event loop before taking a batch: inference blocks the loop (wasm runs on the main
    // thread), so requests that were parsed and decoded meanwhile only reach `pending` once their I/O
    // callbacks have run. Without this the next batch would start with a single request.
    this.running = new Promise<void>((r) => setImmediate(r))
      .then(() => this.next())
      .finally(() => {
        this.running = null;
        this.kick();
      });
  }

  /** Takes whole requests from the head while they fit in maxBatch (always at least one). */
  private async next(): Promise<void> {
    const batch: Pending<I, O>[] = [this.pending.shift()!];
    let n = batch[0].inputs.length;
    while (this.pending.length > 0 && n + this.pending[0].inputs.length <= this.maxBatch) {
      const p = this.pending.shift()!;
      n += p.inputs.length;
      batch.push(p);
    }
    try {
      const out = await this.runner(batch.flatMap((p) => p.inputs));
      let at = 0;
      for (const p of batch) {
        p.resolve(out.slice(at, at + p.inputs.length));
        at += p.inputs.length;
      }
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  /** Resolves when everything queued so far has finished (graceful shutdown). */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }
}
