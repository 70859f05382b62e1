/**
 * The `npm run pipeline` command line: its commands, and how errors become exit codes (0 all
 * categories completed, 1 some failed/cancelled or an internal error, 2 the user's to fix,
 * 3 Temporal unusable, 4 disk, 130 interrupted; temporal/cli-errors.ts explains each error).
 */
import { Command, CommanderError, Option } from 'commander';
import { explainCliError } from '../../temporal/cli-errors';
import { embeddedServerCommand } from '../../temporal/server-command';
import { cancelCommand } from './cancel';
import { type ChampionFlags, promoteCommand, rollbackCommand } from './champion';
import { addPlanOptions, addWorkerOptions, DEFAULT_PIPELINE, isoDate, type WorkerFlags } from './flags';
import { resumeCommand } from './resume';
import { type RunFlags, runCommand } from './run';
import { type ScheduleCreateFlags, scheduleCommand } from './schedule';
import { errorContext, note, say } from './session';
import { statusCommand } from './status';

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('pipeline')
    .description(
      'Train anomaly detectors per category, orchestrated by Temporal.\n' +
        'Without TEMPORAL_ADDRESS a local dev server (state in .state/temporal.db, Web UI http://localhost:8233)\n' +
        'and worker processes are started and stopped automatically; with it, that cluster and `npm run worker`s are used.',
    )
    .option('--verbose', 'on errors, print the details (stack traces)')
    .exitOverride()
    .showHelpAfterError();

  const run = addWorkerOptions(addPlanOptions(program.command('run', { isDefault: true })))
    .description(`start a run and follow it (default pipeline: ${DEFAULT_PIPELINE})`)
    .option('--run-id <id>', 'run id (default: timestamp + random suffix)')
    .option('--detach', 'start and exit (needs TEMPORAL_ADDRESS)')
    .option('--no-progress', 'no live progress output');
  run.action(async (flags: RunFlags) => setExit(await runCommand(flags)));

  program
    .command('status <run-id>')
    .description('progress of a running run, or the summary of a finished one')
    .option('--json', 'machine-readable output')
    .action(async (runId: string, flags: { json?: boolean }) => setExit(await statusCommand(runId, flags)));

  addWorkerOptions(program.command('resume <run-id>'))
    .description(
      're-run a finished run, reusing every step whose result.json and artifact hashes still match; attach if still running',
    )
    .option('--detach', 'start and exit (needs TEMPORAL_ADDRESS)')
    .option('--no-progress', 'no live progress output')
    .action(async (runId: string, flags: WorkerFlags & { detach?: boolean; progress: boolean }) =>
      setExit(await resumeCommand(runId, flags)),
    );

  addWorkerOptions(program.command('cancel <run-id>'))
    .description('cancel a run, or only some of its categories')
    .option('--category <names...>', 'cancel only these categories')
    .action(async (runId: string, flags: { category?: string[] } & WorkerFlags) =>
      setExit(await cancelCommand(runId, flags)),
    );

  program
    .command('server')
    .description(
      'the shared embedded Temporal dev server: status, or stop it (default: only when no run uses it)',
    )
    .addArgument(new Command().createArgument('<action>', 'status | stop').choices(['status', 'stop']))
    .option('--force', 'stop: even while runs still use it (they stay resumable)')
    .action(async (action: 'status' | 'stop', flags: { force?: boolean }) =>
      setExit(await embeddedServerCommand(action, { force: flags.force, say })),
    );

  for (const [name, what, fn] of [
    ['promote', "make a run's package the category's champion (what serve serves), by hand", promoteCommand],
    ['rollback', 'point the category back at the champion before the current one', rollbackCommand],
  ] as const) {
    const cmd = program
      .command(`${name} <category>`)
      .description(what)
      .option('--pipeline <name>', 'the pipeline whose champion it is (name or YAML file)', 'nightly')
      .option('--runs-root <dir>', 'the runs folder');
    if (name === 'promote')
      cmd
        .requiredOption('--run <run-id>', 'the run whose package to promote')
        .option('--step <name>', 'its package step', 'package');
    cmd.action(async (category: string, flags: ChampionFlags) => setExit(await fn(category, flags)));
  }

  addPlanOptions(program.command('schedule'))
    .description('manage Temporal Schedules of a pipeline (cron + overlap policy from its YAML `schedule:`)')
    .addArgument(
      new Command()
        .createArgument('<action>', 'create | list | describe | trigger | backfill | delete')
        .choices(['create', 'list', 'describe', 'trigger', 'backfill', 'delete']),
    )
    .argument('[schedule-id]', 'schedule id (letters, digits, _ and -)')
    .option('--paused', 'create: start paused')
    .addOption(new Option('--start <time>', 'backfill: from (ISO time)').argParser(isoDate))
    .addOption(new Option('--end <time>', 'backfill: to (ISO time)').argParser(isoDate))
    .action(
      async (
        action: string,
        id: string | undefined,
        flags: ScheduleCreateFlags & { start?: Date; end?: Date },
      ) => setExit(await scheduleCommand(action, id, flags)),
    );
  return program;
}

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help/version exit 0; bad usage was already printed by commander.
      return err.exitCode === 0 ? 0 : 2;
    }
    const explained = explainCliError(err, { ...errorContext, verbose: argv.includes('--verbose') });
    for (const line of explained.lines) note(line);
    return explained.exitCode;
  }
}
