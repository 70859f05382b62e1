/** Starting and finding pipeline runs (client side). */
import { type Client, type WorkflowHandle, WorkflowNotFoundError } from '@temporalio/client';
import type { RunPlan } from '../lib/pipeline/plan';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { UserError } from '../lib/util/errors';
import { type PipelineWorkflowInput, pipelineWorkflowId, SEARCH_ATTRIBUTES } from '../workflows/definitions';
import type { pipelineWorkflow } from '../workflows/pipeline';

export type PipelineHandle = WorkflowHandle<typeof pipelineWorkflow>;

/** Memo on every pipeline workflow: enough to find the run directory again (resume, status). */
export interface RunMemo {
  pipeline: string;
  runDir: string;
}

export async function startPipelineRun(
  client: Client,
  plan: RunPlan,
  opts: { reuseCompleted?: boolean } = {},
): Promise<PipelineHandle> {
  const input: PipelineWorkflowInput = { plan, reuseCompleted: opts.reuseCompleted ?? false };
  const memo: RunMemo = { pipeline: plan.pipeline, runDir: plan.runDir };
  return client.workflow.start<typeof pipelineWorkflow>('pipelineWorkflow', {
    taskQueue: TASK_QUEUES.cpu,
    workflowId: pipelineWorkflowId(plan.runId),
    args: [input],
    memo: { ...memo },
    typedSearchAttributes: [
      { key: SEARCH_ATTRIBUTES.pipeline, value: plan.pipeline },
      { key: SEARCH_ATTRIBUTES.runId, value: plan.runId },
      { key: SEARCH_ATTRIBUTES.stage, value: 'starting' },
    ],
    staticSummary: `${plan.pipeline}: ${plan.categories.length} categor${plan.categories.length === 1 ? 'y' : 'ies'}${opts.reuseCompleted ? ' (resume)' : ''}`,
    staticDetails: [
      `Run \`${plan.runId}\` of pipeline **${plan.pipeline}**`,
      `Categories: ${plan.categories.map((c) => c.name).join(', ')}`,
      `Steps: ${plan.steps.map((s) => `${s.name}${s.needs.length ? ` (after ${s.needs.join(', ')})` : ''}`).join('; ')}`,
      `Run dir: \`${plan.runDir}\``,
    ].join('\n\n'),
  });
}

/** The pipeline workflow of a run id (manual runs by id; scheduled runs through the RunId search attribute). */
export async function findRun(
  client: Client,
  runId: string,
): Promise<{ handle: PipelineHandle; memo: RunMemo }> {
  const direct = client.workflow.getHandle<typeof pipelineWorkflow>(pipelineWorkflowId(runId));
  try {
    const desc = await direct.describe();
    return { handle: direct, memo: desc.memo as unknown as RunMemo };
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  const query = `WorkflowType = 'pipelineWorkflow' AND ${SEARCH_ATTRIBUTES.runId.name} = '${runId.replace(/'/g, '')}'`;
  for await (const wf of client.workflow.list({ query })) {
    const handle = client.workflow.getHandle<typeof pipelineWorkflow>(wf.workflowId);
    return { handle, memo: wf.memo as unknown as RunMemo };
  }
  throw new UserError('INVALID_ARGUMENT', `no pipeline run with id '${runId}' on this Temporal namespace`);
}
