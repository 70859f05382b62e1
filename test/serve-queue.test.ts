import { describe, expect, it } from 'vitest';
import { BatchingQueue, QueueFullError } from '../lib/serve/queue';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('BatchingQueue', () => {
  it('runs one batch at a time and merges requests that arrive meanwhile (up to maxBatch)', async () => {
    const batches: number[][] = [];
    let active = 0;
    const q = new BatchingQueue<number, number>(async (xs) => {
      active++;
      expect(active).toBe(1);
      batches.push(xs);
      await tick();
      active--;
      return xs.map((x) => x * 10);
    }, 4);
    const results = await Promise.all([q.run([1]), q.run([2, 3]), q.run([4]), q.run([5, 6]), q.run([7])]);
    expect(results).toEqual([[10], [20, 30], [40], [50, 60], [70]]);
    // Whole requests while they fit in 4 (requests submitted in the same tick join the first batch).
    expect(batches).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7],
    ]);
    await q.drain();
    expect(q.depth).toBe(0);
  });

  it('requests that arrive while a batch blocks the event loop join the next batch', async () => {
    const batches: number[][] = [];
    const later: Promise<number[]>[] = [];
    const q = new BatchingQueue<number, number>(async (xs) => {
      if (batches.length === 0) {
        // Requests arriving during this batch: their callbacks can only run once it has finished.
        for (const x of [2, 3, 4]) later.push(new Promise((r) => setTimeout(() => r(q.run([x])), 0)));
      }
      batches.push(xs);
      const end = Date.now() + 20;
      while (Date.now() < end); // synchronous, like wasm inference on the main thread
      return xs;
    }, 8);
    await q.run([1]);
    await Promise.all(later);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it('a failing batch rejects its requests only; the queue carries on', async () => {
    const q = new BatchingQueue<number, number>(async (xs) => {
      await tick();
      if (xs.includes(0)) throw new Error('boom');
      return xs;
    }, 1);
    const [a, b] = await Promise.allSettled([q.run([0]), q.run([1])]);
    expect(a.status).toBe('rejected');
    expect(b).toEqual({ status: 'fulfilled', value: [1] });
  });

  it('refuses work beyond maxPending with QueueFullError', async () => {
    const q = new BatchingQueue<number, number>(
      async (xs) => {
        await tick();
        return xs;
      },
      1,
      2,
    );
    const running = q.run([1]);
    await new Promise((r) => setImmediate(r)); // the first batch has started: it no longer counts as waiting
    const waiting = [q.run([2]), q.run([3])];
    await expect(q.run([4])).rejects.toBeInstanceOf(QueueFullError);
    await Promise.all([running, ...waiting]);
    await q.drain();
  });
});
