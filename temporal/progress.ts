/**
 * Live progress of a run, for the CLI: the pipeline's `progress` query (category statuses), each
 * running category's `progress` query (step states) and, for its running activities, the latest
 * heartbeat details from describe() (epoch, loss, ETA...). Heartbeats never enter workflow
 * history, so this is how progress is shown without growing it.
 */
import type { Client } from '@temporalio/client';
import { asProgressDetails, type ProgressDetails } from '../lib/steps/contracts';
import {
  type CategoryProgress,
  categoryProgressQuery,
  type PipelineProgress,
  pipelineProgressQuery,
} from '../workflows/definitions';
import type { PipelineHandle } from './runs';

export interface RunningActivity {
  activity: string;
  attempt: number;
  details?: ProgressDetails;
  lastHeartbeat?: Date;
  /** Last failure of a previous attempt, if it is being retried. */
  lastFailure?: string;
}

export interface CategoryLiveProgress extends CategoryProgress {
  activities: RunningActivity[];
}

export interface RunProgress {
  pipeline: PipelineProgress;
  categories: Record<string, CategoryLiveProgress | undefined>;
}

export async function readRunProgress(client: Client, handle: PipelineHandle): Promise<RunProgress> {
  const pipeline = await handle.query(pipelineProgressQuery);
  const categories: RunProgress['categories'] = {};
  await Promise.all(
    Object.entries(pipeline.categories).map(async ([name, status]) => {
      const childId = pipeline.childWorkflowIds[name];
      if (!childId || status === 'pending') return;
      categories[name] = await readCategoryProgress(client, childId).catch(() => undefined);
    }),
  );
  return { pipeline, categories };
}

export async function readCategoryProgress(
  client: Client,
  workflowId: string,
): Promise<CategoryLiveProgress> {
  const handle = client.workflow.getHandle(workflowId);
  const [progress, description] = await Promise.all([handle.query(categoryProgressQuery), handle.describe()]);
  const converter = client.options.loadedDataConverter.payloadConverter;
  const activities: RunningActivity[] = (description.raw.pendingActivities ?? []).map((pa) => {
    const payload = pa.heartbeatDetails?.payloads?.[0];
    let details: ProgressDetails | undefined;
    try {
      details = payload ? asProgressDetails(converter.fromPayload(payload)) : undefined;
    } catch {
      details = undefined;
    }
    const seconds = pa.lastHeartbeatTime?.seconds;
    return {
      activity: pa.activityType?.name ?? '?',
      attempt: pa.attempt ?? 1,
      details,
      lastHeartbeat: seconds != null ? new Date(Number(seconds) * 1000) : undefined,
      lastFailure: pa.lastFailure?.message ?? undefined,
    };
  });
  return { ...progress, activities };
}
