/**
 * What one category's run ended with: the pipeline workflow collects these, the cross-category
 * summary step turns them into a report, and the CLI prints them. Plain JSON, no Temporal types,
 * so that `lib/` (the summary step) can consume it without importing the orchestration layer.
 */
import type { ArtifactRef, JsonValue, StepResult } from '../steps/contracts';

export type CategoryStatus = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';

/** `reused`: a resumed run found the step's result.json with matching artifact hashes and skipped it. */
export type StepState = 'pending' | 'running' | 'completed' | 'reused' | 'failed' | 'skipped' | 'cancelled';

export interface StepFailure {
  step: string;
  message: string;
  /** UserError code (e.g. INVALID_DATASET) when the failure is the user's to fix; absent when transient. */
  code?: string;
  /** Whether retrying could help (false for UserErrors and exhausted non-retryable failures). */
  retryable: boolean;
}

export interface CategoryOutcome {
  category: string;
  status: Exclude<CategoryStatus, 'pending' | 'running'>;
  /** Step name -> final state. */
  steps: Record<string, StepState>;
  /** Step name -> result manifest of every step that finished (or was reused). */
  results: Record<string, StepResult>;
  failure?: StepFailure;
  startedAt: string;
  finishedAt: string;
}

/** What the cross-category summary step returns (a StepResult satisfies it). */
export interface SummaryResult {
  outputs: ArtifactRef[];
  summary: Record<string, JsonValue>;
}

export type SummaryFunction = (runDir: string, outcomes: CategoryOutcome[]) => Promise<SummaryResult>;
