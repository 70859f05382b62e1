/**
 * Chaos, small: a 2-category run of the real CLI (embedded dev server, worker processes, real steps)
 * on tiny synthetic data while a seeded schedule SIGKILLs a training worker, pauses one past its
 * heartbeat timeout (SIGSTOP/SIGCONT) and restarts the dev server. Every category completes, and
 * the model packages' weights and every report metric equal those of an undisturbed run with the
 * same seed. The longer version is `npm run bench:chaos` (docs/BENCHMARKS.md).
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../bench/chaos';

describe('chaos', () => {
  it('worker kills, a paused worker and a server restart change nothing in the results', async () => {
    const report = await runChaos({
      seed: 7,
      categories: 2,
      // Long enough (0.2-0.5 s per epoch here) for the three faults to land while training runs.
      epochs: 60,
      kills: 1,
      pauses: 1,
      restarts: 1,
      heartbeatS: 5,
      pauseMs: 7000,
      log: (line) => console.log(line),
    });
    const { chaosStdout, ...summary } = report;
    console.log(JSON.stringify(summary, null, 2));
    expect(report.chaosExit, chaosStdout).toBe(0);
    expect(chaosStdout).toContain('2/2 categories completed');
    expect(report.faults.map((f) => f.kind).sort()).toEqual([
      'kill-train-worker',
      'pause-train-worker',
      'restart-server',
    ]);
    expect(report.compared.packageFiles).toBeGreaterThan(0);
    expect(report.compared.metrics).toBeGreaterThan(10);
    expect(report.differences).toEqual([]);
  }, 400_000);
});
