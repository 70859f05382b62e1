/**
 * Runs tasks one at a time, with a bounded backlog. The wasm backend is single-threaded, so running two
 * inferences of one model at once only interleaves them (both get slower); queueing keeps per-request
 * latency predictable, and the bound turns overload into a fast 503 instead of an ever-growing wait.
 */
export class QueueFullError extends Error {
  constructor(readonly maxPending: number) {
    super(`inference queue is full (${maxPending} requests waiting); retry shortly`);
    this.name = 'QueueFullError';
  }
}

export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(readonly maxPending = 32) {}

  /** Requests queued or running. */
  get depth(): number {
    return this.waiting;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.maxPending) return Promise.reject(new QueueFullError(this.maxPending));
    this.waiting++;
    const result = this.tail.then(task).finally(() => {
      this.waiting--;
    });
    // The chain must survive a failed task: the next one waits for completion, not success.
    this.tail = result.catch(() => {});
    return result;
  }

  /** Resolves when everything queued so far has finished (graceful shutdown). */
  async drain(): Promise<void> {
    await this.tail;
  }
}
