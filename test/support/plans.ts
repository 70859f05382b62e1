/** RunPlan builders for orchestration tests (independent of buildRunPlan and the YAML format). */
import { join } from 'node:path';
import { defaultTrainingConfig } from '../../lib/config/schema';
import type { RunPlan, StepPlan } from '../../lib/pipeline/plan';
import { TASK_QUEUES } from '../../lib/pipeline/plan';
import type { JsonValue, StepActivity } from '../../lib/steps/contracts';

export interface TestStepSpec {
  name: string;
  activity: StepActivity;
  needs?: string[];
  params?: Record<string, JsonValue>;
  queue?: 'cpu' | 'gpu';
  maximumAttempts?: number;
  heartbeatTimeoutMs?: number;
  startToCloseTimeoutMs?: number;
}

export function testStepPlan(spec: TestStepSpec): StepPlan {
  return {
    name: spec.name,
    activity: spec.activity,
    needs: spec.needs ?? [],
    taskQueue: TASK_QUEUES[spec.queue ?? 'cpu'],
    gpu: spec.queue === 'gpu' ? 1 : 0,
    retry: {
      maximumAttempts: spec.maximumAttempts ?? 3,
      initialIntervalMs: 100,
      backoffCoefficient: 1,
      maximumIntervalMs: 200,
    },
    startToCloseTimeoutMs: spec.startToCloseTimeoutMs ?? 60_000,
    heartbeatTimeoutMs: spec.heartbeatTimeoutMs ?? 5_000,
    params: spec.params ?? {},
  };
}

let counter = 0;

export function testPlan(opts: {
  runsRoot: string;
  steps: TestStepSpec[];
  categories?: string[];
  concurrency?: number;
  runId?: string;
  pipeline?: string;
}): RunPlan {
  const pipeline = opts.pipeline ?? 'test';
  const runId = opts.runId ?? `t${Date.now().toString(36)}-${process.pid}-${counter++}`;
  return {
    pipeline,
    runId,
    runDir: join(opts.runsRoot, pipeline, runId),
    dataRoot: join(opts.runsRoot, 'data'),
    concurrency: opts.concurrency ?? 4,
    categories: (opts.categories ?? ['bottle']).map((name) => ({ name, config: defaultTrainingConfig() })),
    steps: opts.steps.map(testStepPlan),
    schedule: null,
    configHash: 'test',
  };
}
