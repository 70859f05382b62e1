/** Pure parts of the orchestration: DAG helpers and the progress heartbeat throttle. */
import { describe, expect, it, vi } from 'vitest';
import { asProgressDetails, ProgressHeartbeat } from '../activities/heartbeat';
import { findGraphProblems, readySteps, upstreamClosure } from '../workflows/dag';
import { planForScheduledRun } from '../workflows/definitions';
import { testPlan, testStepPlan } from './support/plans';

const step = (name: string, needs: string[] = []) => testStepPlan({ name, activity: 'preprocess', needs });

describe('step DAG', () => {
  it('finds duplicates, unknown needs and cycles', () => {
    expect(findGraphProblems([step('a'), step('b', ['a'])])).toEqual([]);
    expect(findGraphProblems([step('a'), step('a')])).toEqual(["step 'a' is defined twice"]);
    expect(findGraphProblems([step('a', ['x'])])).toEqual(["step 'a' needs unknown step 'x'"]);
    expect(findGraphProblems([step('a', ['c']), step('b', ['a']), step('c', ['b'])])).toEqual([
      'steps form a cycle: a -> c -> b -> a',
    ]);
  });

  it('computes transitive upstream sets in plan order', () => {
    const closure = upstreamClosure([step('a'), step('b', ['a']), step('c', ['a']), step('d', ['c', 'b'])]);
    expect(closure.get('a')).toEqual([]);
    expect(closure.get('d')).toEqual(['a', 'b', 'c']);
  });

  it('releases a step only when all its needs are done (completed or reused)', () => {
    const steps = [step('a'), step('b', ['a']), step('c', ['a']), step('d', ['b', 'c'])];
    expect(
      readySteps(steps, { a: 'pending', b: 'pending', c: 'pending', d: 'pending' }).map((s) => s.name),
    ).toEqual(['a']);
    expect(
      readySteps(steps, { a: 'reused', b: 'pending', c: 'pending', d: 'pending' }).map((s) => s.name),
    ).toEqual(['b', 'c']);
    expect(readySteps(steps, { a: 'completed', b: 'completed', c: 'failed', d: 'pending' })).toEqual([]);
  });

  it('derives a scheduled run id and dir from the workflow id', () => {
    const plan = testPlan({ runsRoot: '/runs', pipeline: 'nightly', runId: 'sched', steps: [] });
    const derived = planForScheduledRun(plan, 'anomaly-pipeline-nightly-2026-11-28T03:00:00Z');
    expect(derived.runId).toBe('nightly-2026-11-28T03-00-00Z');
    expect(derived.runDir).toBe('/runs/nightly/nightly-2026-11-28T03-00-00Z');
  });
});

describe('ProgressHeartbeat', () => {
  it('throttles per-batch progress, sends new checkpoints at once, keeps alive with the latest', () => {
    vi.useFakeTimers();
    try {
      const sent: unknown[] = [];
      const hb = new ProgressHeartbeat((d) => sent.push(d), 1000, 5000);
      hb.progress({ stage: 'train', batch: 1 });
      hb.progress({ stage: 'train', batch: 2 });
      hb.progress({ stage: 'train', batch: 3 });
      expect(sent).toEqual([{ stage: 'train', batch: 1 }]);
      vi.advanceTimersByTime(1000);
      expect(sent.at(-1)).toEqual({ stage: 'train', batch: 3 });
      hb.progress({ stage: 'train', epoch: 1, checkpoint: 'c/1' });
      expect(sent.at(-1)).toEqual({ stage: 'train', epoch: 1, checkpoint: 'c/1' });
      const count = sent.length;
      vi.advanceTimersByTime(5000);
      expect(sent.length).toBe(count + 1);
      hb.stop();
      vi.advanceTimersByTime(20_000);
      expect(sent.length).toBe(count + 1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('accepts only ProgressDetails-shaped heartbeat details', () => {
    expect(asProgressDetails({ stage: 'train', epoch: 2 })).toEqual({ stage: 'train', epoch: 2 });
    expect(asProgressDetails(3)).toBeUndefined();
    expect(asProgressDetails({ epoch: 2 })).toBeUndefined();
    expect(asProgressDetails(undefined)).toBeUndefined();
  });
});
