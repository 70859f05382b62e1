/**
 * Where the wall time of a pipeline run goes: inside the step functions (activity bodies) or in
 * orchestration (workflow tasks, task-queue dispatch, activity adapters, worker polling).
 * Pure functions over timestamps, so the arithmetic is testable without a server.
 */

/** One activity execution as Temporal and the step itself saw it (epoch milliseconds). */
export interface ActivitySpan {
  /** `<category> / <step>`, or `summary` for the cross-category summary activity. */
  label: string;
  attempts: number;
  scheduledMs: number;
  /** Start of the attempt that closed it (Temporal's ActivityTaskStarted event time). */
  startedMs: number;
  closedMs: number;
  /** The step's own startedAt/finishedAt (its result.json); null when it reports none (summary). */
  body: { startMs: number; endMs: number } | null;
}

export interface RunTimeline {
  /** Pipeline workflow started / closed (history event times). */
  startMs: number;
  endMs: number;
  activities: ActivitySpan[];
}

export interface OverheadBreakdown {
  /** Pipeline workflow start -> first critical-path activity started (child start, first dispatch). */
  startToFirstActivityMs: number;
  /** Σ previous critical-path activity closed -> next one started (workflow task + dispatch). */
  betweenActivitiesMs: number;
  /** Σ ActivityTaskStarted -> step body start, and body end -> activity closed (adapter, result). */
  inActivityAdapterMs: number;
  /** Last activity closed -> pipeline workflow closed. */
  lastActivityToEndMs: number;
}

export interface OverheadAnalysis {
  wallMs: number;
  activityCount: number;
  /** Σ of every activity body (work done, possibly in parallel). */
  activitySumMs: number;
  /** Σ of the activity bodies on the observed critical chain. */
  criticalPathActivityMs: number;
  criticalPath: string[];
  overheadMs: number;
  overheadPct: number;
  breakdown: OverheadBreakdown;
  /** Σ ActivityTaskScheduled -> Started on the critical chain (part of the breakdown above). */
  criticalScheduleToStartMs: number;
  /** Mean ActivityTaskScheduled -> Started over all activities (queue wait for a free slot included). */
  meanScheduleToStartMs: number;
}

/** Body duration; an activity without its own timestamps counts whole (Temporal start -> close). */
export function bodyMs(a: ActivitySpan): number {
  return a.body ? a.body.endMs - a.body.startMs : a.closedMs - a.startedMs;
}

/**
 * The observed critical chain: from the activity that closed last, repeatedly step back to the
 * activity that closed last before the current one started. This follows what really gated each
 * start (a DAG predecessor, or the activity whose end freed a worker slot / concurrency slot), so the
 * gaps along the chain are orchestration latency, not waiting for other work.
 */
export function criticalChain(activities: readonly ActivitySpan[]): ActivitySpan[] {
  const byClose = [...activities].sort((a, b) => a.closedMs - b.closedMs);
  const chain: ActivitySpan[] = [];
  let cur = byClose.at(-1);
  while (cur) {
    const current = cur;
    chain.push(current);
    cur = byClose.filter((a) => a !== current && a.closedMs <= current.startedMs).at(-1);
  }
  return chain.reverse();
}

export function analyseRun(run: RunTimeline): OverheadAnalysis {
  const wallMs = run.endMs - run.startMs;
  const chain = criticalChain(run.activities);
  const criticalPathActivityMs = chain.reduce((s, a) => s + bodyMs(a), 0);
  let betweenActivitiesMs = 0;
  let inActivityAdapterMs = 0;
  chain.forEach((a, i) => {
    if (i > 0) betweenActivitiesMs += a.startedMs - chain[i - 1].closedMs;
    inActivityAdapterMs += a.closedMs - a.startedMs - bodyMs(a);
  });
  const first = chain[0];
  const last = chain.at(-1);
  const overheadMs = wallMs - criticalPathActivityMs;
  const n = run.activities.length;
  return {
    wallMs,
    activityCount: n,
    activitySumMs: run.activities.reduce((s, a) => s + bodyMs(a), 0),
    criticalPathActivityMs,
    criticalPath: chain.map((a) => a.label),
    overheadMs,
    overheadPct: wallMs > 0 ? (100 * overheadMs) / wallMs : 0,
    breakdown: {
      startToFirstActivityMs: first ? first.startedMs - run.startMs : wallMs,
      betweenActivitiesMs,
      inActivityAdapterMs,
      lastActivityToEndMs: last ? run.endMs - last.closedMs : 0,
    },
    criticalScheduleToStartMs: chain.reduce((s, a) => s + (a.startedMs - a.scheduledMs), 0),
    meanScheduleToStartMs:
      n > 0 ? run.activities.reduce((s, a) => s + (a.startedMs - a.scheduledMs), 0) / n : 0,
  };
}
