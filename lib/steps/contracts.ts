/**
 * The contract between the orchestration edge (Temporal activities) and the domain steps.
 * Everything here is plain, JSON-serialisable data: activities exchange references to files under
 * the run directory, never tensors or images.
 */
import type { TrainingConfig } from '../config/schema';
import type { JsonValue } from '../util/json';

export type { JsonValue };

/**
 * The activities a pipeline YAML may name. `summary` runs once per pipeline, after all categories.
 * `package` seals the servable model package (checkpoint's model + threshold's calibration + report's
 * metrics) once, in its own folder: no step writes into another step's folder.
 */
export const STEP_ACTIVITIES = [
  'preprocess',
  'train',
  'validate',
  'checkpoint',
  'threshold',
  'report',
  'package',
  'promote',
] as const;
export type StepActivity = (typeof STEP_ACTIVITIES)[number];

/** A file written by a step; `path` is relative to the run directory. */
export interface ArtifactRef {
  name: string;
  path: string;
  sha256: string;
  bytes: number;
}

/** What a step returns (and writes as `<stepDir>/result.json`, atomically, as its last act). */
export interface StepResult {
  step: string;
  activity: StepActivity;
  category: string;
  outputs: ArtifactRef[];
  /** Small facts worth showing (counts, metrics, backend, epochs); never bulk data. */
  summary: Record<string, JsonValue>;
  startedAt: string;
  finishedAt: string;
}

/** Everything a step needs, resolved by the client from YAML + config, passed through the workflow. */
export interface StepContext {
  /** Absolute: `runs/<pipeline>/<run-id>`. */
  runDir: string;
  pipeline: string;
  runId: string;
  category: string;
  /** Absolute dataset root in the MVTec AD layout (`<dataRoot>/<category>/train/good`, ...). */
  dataRoot: string;
  /** Step name from the pipeline YAML. */
  step: string;
  /** Absolute: `<runDir>/<category>/<step>`; the step writes only below it. */
  stepDir: string;
  config: TrainingConfig;
  /** The step's `params:` from YAML (free-form; each step validates its own). */
  params: Record<string, JsonValue>;
  /** Results of every upstream step (transitively), keyed by activity name. */
  inputs: Partial<Record<StepActivity, StepResult>>;
}

/** Live progress; the activity heartbeats it, the CLI draws it, the Web UI shows it. */
export interface ProgressDetails {
  stage: string;
  epoch?: number;
  totalEpochs?: number;
  batch?: number;
  totalBatches?: number;
  loss?: number;
  valLoss?: number;
  imagesPerSec?: number;
  etaSec?: number;
  /** Run-dir-relative path of the newest checkpoint, so a retry can resume from it. */
  checkpoint?: string;
  message?: string;
  /** Host GPU index of the training worker process (worker --gpus), when it has one. */
  gpu?: string;
}

export interface StepHooks {
  /** Called often (per batch); implementations throttle. Never throws. */
  progress(details: ProgressDetails): void;
  /** Aborted when the activity is cancelled or the worker shuts down: stop between batches. */
  signal: AbortSignal;
  /** Heartbeat details of the previous attempt of this activity, if any (resume hint). */
  previousProgress?: ProgressDetails;
  attempt: number;
}

export type StepFunction = (ctx: StepContext, hooks: StepHooks) => Promise<StepResult>;

/** Heartbeat details come back from the server untyped; accept only what looks like ProgressDetails. */
export function asProgressDetails(value: unknown): ProgressDetails | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const stage = (value as { stage?: unknown }).stage;
  return typeof stage === 'string' ? (value as ProgressDetails) : undefined;
}

/** Hooks for running a step outside Temporal (CLI, tests). */
export function localHooks(onProgress: (d: ProgressDetails) => void = () => {}): StepHooks {
  return { progress: onProgress, signal: new AbortController().signal, attempt: 1 };
}
