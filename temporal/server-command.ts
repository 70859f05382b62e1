/**
 * `npm run pipeline -- server status | stop [--force]`: the shared embedded dev server
 * (temporal/server-lease.ts) by hand. `status` shows the server this machinery started and the
 * runs holding a lease on it; `stop` stops it when no run uses it (each run stops it anyway when it
 * is the last to leave), or with --force while runs still do (they fail with exit 3 and stay
 * resumable). A server that the CLI did not start is never stopped.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../lib/util/errors';
import { isPortOpen } from './dev-server';
import {
  clearServerRecord,
  leaseDirs,
  liveLeases,
  readServerRecord,
  stopServerPid,
  withLeaseLock,
} from './server-lease';
import { embeddedPort, embeddedStateDir } from './session';

function leaseCommand(leasesDir: string, pid: number): string {
  try {
    const lease = JSON.parse(readFileSync(join(leasesDir, `${pid}.json`), 'utf8')) as {
      argv?: string[];
      since?: string;
    };
    return `${(lease.argv ?? []).join(' ') || '(no arguments)'}${lease.since ? ` since ${lease.since}` : ''}`;
  } catch {
    return '';
  }
}

export async function embeddedServerCommand(
  action: 'status' | 'stop',
  opts: { force?: boolean; say: (line: string) => void },
): Promise<number> {
  if (process.env.TEMPORAL_ADDRESS?.trim())
    throw new UserError(
      'INVALID_ARGUMENT',
      'TEMPORAL_ADDRESS is set: that cluster is not managed by this command (unset it for the embedded server)',
    );
  const stateDir = embeddedStateDir();
  const address = `127.0.0.1:${embeddedPort()}`;
  const dirs = leaseDirs(stateDir);
  const say = opts.say;
  return withLeaseLock(dirs, async () => {
    const record = readServerRecord(dirs);
    const leases = liveLeases(dirs);
    const listening = await isPortOpen(address);
    if (action === 'status') {
      if (record)
        say(
          `Embedded Temporal server: pid ${record.pid} at ${record.address} since ${record.startedAt} (state: ${record.dbFile})`,
        );
      else if (listening)
        say(`A Temporal server not started by this CLI listens at ${address}; runs use it, none stops it.`);
      else say(`No embedded Temporal server is running (state folder: ${stateDir}).`);
      if (leases.length === 0) say('No run is using it.');
      for (const pid of leases) say(`  in use by pid ${pid}: ${leaseCommand(dirs.leases, pid)}`);
      return 0;
    }
    if (!record) {
      if (listening)
        throw new UserError(
          'INVALID_ARGUMENT',
          `the Temporal server at ${address} was not started by this CLI; stop it where it was started`,
        );
      say('No embedded Temporal server is running.');
      return 0;
    }
    if (leases.length > 0 && !opts.force)
      throw new UserError(
        'INVALID_ARGUMENT',
        `${leases.length} run(s) still use the embedded server (pid ${leases.join(', ')}); the last to finish stops it. ` +
          'Stop it anyway with: npm run pipeline -- server stop --force (those runs stay resumable)',
      );
    await stopServerPid(record.pid);
    clearServerRecord(dirs);
    say(`Stopped the embedded Temporal server (pid ${record.pid}).`);
    return 0;
  });
}
