/** The overhead arithmetic of `npm run bench:pipeline` on hand-made timelines. */
import { describe, expect, it } from 'vitest';
import { type ActivitySpan, analyseRun, criticalChain } from '../bench/pipeline-timeline';

function span(
  label: string,
  scheduledMs: number,
  startedMs: number,
  body: [number, number],
  closedMs: number,
): ActivitySpan {
  return { label, attempts: 1, scheduledMs, startedMs, closedMs, body: { startMs: body[0], endMs: body[1] } };
}

describe('pipeline overhead analysis', () => {
  it('splits the wall time into critical-path activity time and overhead parts that add up', () => {
    const a = span('c / prep', 100, 110, [120, 1120], 1130);
    const b = span('c / train', 1150, 1160, [1170, 5170], 5180);
    // Runs in parallel with train and ends earlier: not on the critical path.
    const side = span('c / side', 1150, 1155, [1160, 2160], 2170);
    const summary: ActivitySpan = { ...span('summary', 5200, 5210, [0, 0], 5260), body: null };
    const analysis = analyseRun({ startMs: 0, endMs: 5300, activities: [a, side, b, summary] });
    expect(analysis.criticalPath).toEqual(['c / prep', 'c / train', 'summary']);
    expect(analysis.wallMs).toBe(5300);
    expect(analysis.activitySumMs).toBe(1000 + 4000 + 1000 + 50);
    expect(analysis.criticalPathActivityMs).toBe(5050);
    expect(analysis.overheadMs).toBe(250);
    expect(analysis.breakdown).toEqual({
      startToFirstActivityMs: 110,
      betweenActivitiesMs: 30 + 30,
      inActivityAdapterMs: 20 + 20,
      lastActivityToEndMs: 40,
    });
    const parts = Object.values(analysis.breakdown).reduce((s, v) => s + v, 0);
    expect(parts).toBe(analysis.overheadMs);
    expect(analysis.criticalScheduleToStartMs).toBe(10 + 10 + 10);
  });

  it('follows the activity whose end freed a slot, not only DAG predecessors', () => {
    // y waited for x's training slot: its start follows x's close.
    const x = span('a / train', 0, 0, [0, 100], 100);
    const y = span('b / train', 10, 105, [105, 200], 200);
    expect(criticalChain([y, x]).map((s) => s.label)).toEqual(['a / train', 'b / train']);
  });
});
