/**
 * Temporal Schedules for recurring pipeline runs. The cron and overlap policy come from the
 * pipeline YAML (`RunPlan.schedule`). Every fire starts a pipeline workflow whose id the schedule
 * suffixes with the fire time; the workflow turns that into the run id (own run directory).
 */
import type { Client, ScheduleDescription, ScheduleOverlapPolicy, ScheduleSummary } from '@temporalio/client';
import type { RunPlan, SchedulePlan } from '../lib/pipeline/plan';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { UserError } from '../lib/util/errors';
import { type PipelineWorkflowInput, pipelineWorkflowId, SEARCH_ATTRIBUTES } from '../workflows/definitions';
import type { pipelineWorkflow } from '../workflows/pipeline';

const OVERLAP: Record<SchedulePlan['overlap'], ScheduleOverlapPolicy> = {
  skip: 'SKIP',
  buffer_one: 'BUFFER_ONE',
  buffer_all: 'BUFFER_ALL',
  cancel_other: 'CANCEL_OTHER',
  terminate_other: 'TERMINATE_OTHER',
  allow_all: 'ALLOW_ALL',
};

export async function createPipelineSchedule(
  client: Client,
  scheduleId: string,
  plan: RunPlan,
  opts: { paused?: boolean; note?: string } = {},
): Promise<void> {
  const schedule = plan.schedule;
  if (!schedule || schedule.cron.length === 0) {
    throw new UserError('INVALID_PIPELINE', `pipeline '${plan.pipeline}' has no 'schedule:' (cron) section`);
  }
  const input: PipelineWorkflowInput = { plan, runIdFromWorkflowId: true };
  await client.schedule.create({
    scheduleId,
    spec: { cronExpressions: schedule.cron },
    action: {
      type: 'startWorkflow',
      workflowType: 'pipelineWorkflow',
      taskQueue: TASK_QUEUES.cpu,
      workflowId: pipelineWorkflowId(scheduleId),
      args: [input] satisfies Parameters<typeof pipelineWorkflow>,
      memo: { pipeline: plan.pipeline, scheduleId },
      typedSearchAttributes: [{ key: SEARCH_ATTRIBUTES.pipeline, value: plan.pipeline }],
      staticSummary: `${plan.pipeline} (schedule ${scheduleId})`,
    },
    policies: { overlap: OVERLAP[schedule.overlap], catchupWindow: schedule.catchupWindowMs },
    state: { paused: opts.paused ?? false, note: opts.note ?? `pipeline ${plan.pipeline}` },
    memo: { pipeline: plan.pipeline },
  });
}

export async function listPipelineSchedules(client: Client): Promise<ScheduleSummary[]> {
  const out: ScheduleSummary[] = [];
  for await (const s of client.schedule.list()) {
    if (s.action?.type === 'startWorkflow' && s.action.workflowType === 'pipelineWorkflow') out.push(s);
  }
  return out;
}

export function describePipelineSchedule(client: Client, scheduleId: string): Promise<ScheduleDescription> {
  return client.schedule.getHandle(scheduleId).describe();
}

export function triggerPipelineSchedule(client: Client, scheduleId: string): Promise<void> {
  return client.schedule.getHandle(scheduleId).trigger();
}

export function backfillPipelineSchedule(
  client: Client,
  scheduleId: string,
  start: Date,
  end: Date,
): Promise<void> {
  if (!(start < end))
    throw new UserError(
      'INVALID_ARGUMENT',
      `backfill: start ${start.toISOString()} is not before end ${end.toISOString()}`,
    );
  return client.schedule.getHandle(scheduleId).backfill({ start, end });
}

export async function deletePipelineSchedule(client: Client, scheduleId: string): Promise<void> {
  const handle = client.schedule.getHandle(scheduleId);
  // The server answers deleting an unknown schedule with a confusing error; describe() throws
  // ScheduleNotFoundError instead.
  await handle.describe();
  await handle.delete();
}
