/**
 * How many intra-op threads this process's training may use right now. A host's worker supervisor
 * (temporal/worker-supervisor) splits the cores between the trainings that run at the moment and
 * tells each child its share as trainings start and end; the trainer picks the new share up between
 * epochs (lib/train/trainer). So when fewer categories than training slots remain, the ones still
 * training get the idle cores instead of leaving them unused. Without a supervisor it stays unset
 * and the start-up share (ANOMALY_SPOTTER_TRAIN_THREADS, lib/train/engine) holds.
 */
let budget: number | null = null;

/** null: no share (the start-up count holds). */
export function setThreadBudget(threads: number | null): void {
  budget = threads === null ? null : Math.max(1, Math.floor(threads));
}

/** The current share, or null when nobody has set one. */
export function threadBudget(): number | null {
  return budget;
}

/** Each of `busy` trainings' share of `cores` (at least one thread each). */
export function threadsPerTraining(cores: number, busy: number): number {
  return Math.max(1, Math.floor(cores / Math.max(1, busy)));
}
