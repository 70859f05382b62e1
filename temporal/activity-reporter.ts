/**
 * Training worker child -> supervisor, over the IPC channel the supervisor opens: which activity
 * task this process is running (its task token). When the child dies, the supervisor fails that
 * task right away with the token (AsyncCompletionClient), so Temporal retries it now instead of
 * after the step's heartbeat timeout. Without an IPC channel (a worker started by hand) it does
 * nothing.
 */
import type { ActivityInboundCallsInterceptor, ActivityInterceptorsFactory } from '@temporalio/worker';

export interface ActivityStartedMessage {
  kind: 'activity-started';
  /** base64 of the task token */
  taskToken: string;
  activityId: string;
  activityType: string;
  workflowId?: string;
  attempt: number;
}

export interface ActivityEndedMessage {
  kind: 'activity-ended';
  taskToken: string;
}

export type ActivityMessage = ActivityStartedMessage | ActivityEndedMessage;

export function isActivityMessage(value: unknown): value is ActivityMessage {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { kind?: unknown; taskToken?: unknown };
  return (v.kind === 'activity-started' || v.kind === 'activity-ended') && typeof v.taskToken === 'string';
}

/**
 * Set by the supervisor on the children it starts: only they report. Any other IPC channel (a test
 * runner's fork, a user's own parent process) is not ours to write to.
 */
export const SUPERVISED_ENV = 'ANOMALY_SPOTTER_SUPERVISED';

function send(message: ActivityMessage): void {
  if (process.env[SUPERVISED_ENV] !== '1' || !process.send || !process.connected) return;
  try {
    process.send(message);
  } catch {
    // The supervisor went away; nothing to report to.
  }
}

/** Reports every activity this worker starts and ends to the parent process (if there is one). */
export const reportActivitiesToParent: ActivityInterceptorsFactory = (ctx) => {
  const inbound: ActivityInboundCallsInterceptor = {
    async execute(input, next) {
      const { info } = ctx;
      const taskToken = Buffer.from(info.taskToken).toString('base64');
      send({
        kind: 'activity-started',
        taskToken,
        activityId: info.activityId,
        activityType: info.activityType,
        workflowId: info.workflowExecution?.workflowId,
        attempt: info.attempt,
      });
      try {
        return await next(input);
      } finally {
        send({ kind: 'activity-ended', taskToken });
      }
    },
  };
  return { inbound };
};
