/**
 * Two overlapping `npm run pipeline` runs on one machine (same state dir and port) share one
 * embedded dev server: the first to finish leaves it running for the second, which completes; the
 * server stops when the last run leaves. Real CLI, real dev server, real steps on tiny data.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeDataset } from '../lib/data/synth';
import { isPortOpen } from '../temporal/dev-server';
import { leaseDirs } from '../temporal/server-lease';
import {
  type CliRun,
  freeEmbeddedPort,
  killQuietly,
  pidsMentioning,
  startCli,
  waitFor,
  writeTinyPipeline,
} from './support/cli-embedded';

let dir: string;
let stateDir: string;
let port: number;
const started: CliRun[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-shared-server-'));
  stateDir = join(dir, 'state');
  port = await freeEmbeddedPort();
  await synthesizeDataset(join(dir, 'data'), {
    size: 32,
    categories: ['chip'],
    trainGood: 12,
    testGood: 2,
    perDefect: 1,
  });
  writeTinyPipeline(dir, 'short', { epochs: 2 });
  // Long enough to still be training when the short run has finished and left.
  writeTinyPipeline(dir, 'long', { epochs: 120 });
  writeTinyPipeline(dir, 'long2', { epochs: 400 });
});

afterAll(() => {
  for (const run of started) if (run.child.pid) killQuietly(-run.child.pid);
  if (stateDir) for (const pid of pidsMentioning(join(stateDir, 'temporal.db'))) killQuietly(pid);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(name: string): CliRun {
  const cli = startCli(
    [
      '--pipeline',
      join(dir, `${name}.yaml`),
      '--data-root',
      join(dir, 'data'),
      '--runs-root',
      join(dir, 'runs'),
      '--run-id',
      name,
      '--train-slots',
      '1',
      '--no-progress',
    ],
    { stateDir, port },
  );
  started.push(cli);
  return cli;
}

describe('embedded dev server shared by concurrent runs', () => {
  it('the first run to finish leaves the server to the second; the last one out stops it', async () => {
    const address = `127.0.0.1:${port}`;
    const long = run('long');
    await waitFor('the long run to start', () => long.stdout().includes('Run long'), 150_000, long);
    const short = run('short');
    const shortDone = await short.exited;
    expect({ ...shortDone, out: short.stdout(), err: short.stderr() }).toMatchObject({ code: 0 });
    expect(short.stderr()).toMatch(/Using the Temporal server already running .*shared, started by pid/);
    expect(short.stdout()).toContain('1/1 categories completed');
    // The long run is still going, and so is the server it shares.
    expect(long.child.exitCode, 'the long run outlasted the short one').toBeNull();
    expect(short.stderr()).toMatch(/Leaving the embedded Temporal server running for 1 other run/);
    expect(await isPortOpen(address)).toBe(true);
    expect(pidsMentioning(join(stateDir, 'temporal.db'))).toHaveLength(1);

    const longDone = await long.exited;
    expect({ ...longDone, err: long.stderr() }).toMatchObject({ code: 0 });
    expect(long.stderr()).not.toMatch(/ECONNREFUSED|ServiceError/);
    expect(long.stdout()).toContain('1/1 categories completed');
    // Last one out: the server is gone, no lease is left.
    await waitFor('the server to stop', async () => !(await isPortOpen(address)), 15_000);
    expect(pidsMentioning(join(stateDir, 'temporal.db'))).toEqual([]);
    expect(readdirSync(leaseDirs(stateDir).leases)).toEqual([]);
  });

  it('`server status` lists the server and the runs using it; `server stop` refuses while one does', async () => {
    const address = `127.0.0.1:${port}`;
    const long = run('long2');
    await waitFor('the run to start', () => long.stdout().includes('Run long2'), 150_000, long);
    const status = startCli(['server', 'status'], { stateDir, port });
    started.push(status);
    expect((await status.exited).code).toBe(0);
    expect(status.stdout()).toMatch(new RegExp(`Embedded Temporal server: pid \\d+ at ${address} since`));
    expect(status.stdout()).toContain(`in use by pid ${long.child.pid}:`);
    const stop = startCli(['server', 'stop'], { stateDir, port });
    started.push(stop);
    expect((await stop.exited).code).toBe(2);
    expect(stop.stderr().trim()).toBe(
      `error: 1 run(s) still use the embedded server (pid ${long.child.pid}); the last to finish stops it. Stop it anyway with: npm run pipeline -- server stop --force (those runs stay resumable)`,
    );
    expect(await isPortOpen(address)).toBe(true);
    // Ctrl-C: the run leaves (resumable); it was the last, so the server stops with it.
    if (long.child.pid) process.kill(-long.child.pid, 'SIGINT');
    expect((await long.exited).code).toBe(130);
    await waitFor('the server to stop', async () => !(await isPortOpen(address)), 15_000);
    const after = startCli(['server', 'status'], { stateDir, port });
    started.push(after);
    await after.exited;
    expect(after.stdout()).toContain('No embedded Temporal server is running');
  });

  it('ignores the lease of a run that died without leaving', async () => {
    const address = `127.0.0.1:${port}`;
    // A run killed with SIGKILL leaves its lease behind: a pid that no longer exists.
    const dirs = leaseDirs(stateDir);
    mkdirSync(dirs.leases, { recursive: true });
    writeFileSync(join(dirs.leases, '999999.json'), '{"pid":999999}');
    const second = startCli(['status', 'short'], { stateDir, port });
    started.push(second);
    const done = await second.exited;
    expect({ ...done, err: second.stderr() }).toMatchObject({ code: 0 });
    await waitFor('the server to stop', async () => !(await isPortOpen(address)), 15_000);
    expect(readdirSync(dirs.leases)).toEqual([]);
  });
});
