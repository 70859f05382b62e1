/** `npm run pipeline -- schedule <action> [id]`: the pipeline's Temporal Schedules. */
import { UserError } from '../../lib/util/errors';
import {
  backfillPipelineSchedule,
  createPipelineSchedule,
  deletePipelineSchedule,
  describePipelineSchedule,
  listPipelineSchedules,
  triggerPipelineSchedule,
} from '../../temporal/schedules';
import { type PlanFlags, planFromFlags } from './flags';
import { note, say, withSession } from './session';

export interface ScheduleCreateFlags extends PlanFlags {
  paused?: boolean;
}

export async function scheduleCommand(
  action: string,
  id: string | undefined,
  flags: ScheduleCreateFlags & { start?: Date; end?: Date },
): Promise<number> {
  const needId = (): string => {
    if (!id) throw new UserError('INVALID_ARGUMENT', `schedule ${action} needs a schedule id`);
    if (!/^[A-Za-z0-9_-]+$/.test(id))
      throw new UserError('INVALID_ARGUMENT', `invalid schedule id '${id}': letters, digits, _ and - only`);
    return id;
  };
  const plan = action === 'create' ? await planFromFlags(flags) : undefined;
  return withSession({}, async ({ client, embedded }) => {
    switch (action) {
      case 'create': {
        await createPipelineSchedule(client, needId(), plan!, { paused: flags.paused });
        say(
          `Schedule ${id} created: ${plan!.schedule!.cron.join(', ')} (overlap: ${plan!.schedule!.overlap})`,
        );
        if (embedded)
          note(
            'Note: with the embedded server, scheduled runs only happen while a server and workers are running.',
          );
        return 0;
      }
      case 'list': {
        const all = await listPipelineSchedules(client);
        if (all.length === 0) say('No pipeline schedules.');
        for (const s of all) {
          const next = s.info?.nextActionTimes?.[0]?.toISOString() ?? '-';
          say(
            `${s.scheduleId.padEnd(24)} ${(String(s.memo?.pipeline ?? '')).padEnd(12)} next: ${next}${s.state.paused ? ' (paused)' : ''}`,
          );
        }
        return 0;
      }
      case 'describe': {
        const d = await describePipelineSchedule(client, needId());
        say(`Schedule ${d.scheduleId}${d.state.paused ? ' (paused)' : ''}: ${d.state.note ?? ''}`);
        say(`  overlap: ${d.policies.overlap}, catchup window: ${d.policies.catchupWindow} ms`);
        say(
          `  next: ${
            d.info.nextActionTimes
              .slice(0, 3)
              .map((t) => t.toISOString())
              .join(', ') || '-'
          }`,
        );
        say(
          `  recent: ${d.info.recentActions.map((a) => `${a.takenAt.toISOString()} ${a.action.workflow.workflowId}`).join('\n          ') || '-'}`,
        );
        say(`  running: ${d.info.runningActions.map((a) => a.workflow.workflowId).join(', ') || '-'}`);
        return 0;
      }
      case 'trigger':
        await triggerPipelineSchedule(client, needId());
        say(`Schedule ${id} triggered.`);
        return 0;
      case 'backfill': {
        if (!flags.start || !flags.end)
          throw new UserError('INVALID_ARGUMENT', 'schedule backfill needs --start and --end');
        await backfillPipelineSchedule(client, needId(), flags.start, flags.end);
        say(`Schedule ${id}: backfill ${flags.start.toISOString()} .. ${flags.end.toISOString()} requested.`);
        return 0;
      }
      case 'delete':
        await deletePipelineSchedule(client, needId());
        say(`Schedule ${id} deleted.`);
        return 0;
      default:
        throw new UserError(
          'INVALID_ARGUMENT',
          `unknown schedule action '${action}' (create, list, describe, trigger, backfill, delete)`,
        );
    }
  });
}
