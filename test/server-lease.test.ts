/**
 * The lease bookkeeping behind the shared embedded server (temporal/server-lease.ts), without a
 * server: the lock admits one holder at a time and is broken when its holder is dead; leases and
 * server records of dead processes are ignored and removed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  addLease,
  leaseDirs,
  liveLeases,
  pidAlive,
  readServerRecord,
  removeLease,
  withLeaseLock,
  writeServerRecord,
} from '../temporal/server-lease';

const root = mkdtempSync(join(tmpdir(), 'anomaly-lease-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A pid that existed and is gone now. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  return Number(r.stdout);
}

describe('server leases', () => {
  it('the lock admits one holder at a time', async () => {
    const dirs = leaseDirs(join(root, 'a'));
    const events: string[] = [];
    const hold = (name: string) =>
      withLeaseLock(dirs, async () => {
        events.push(`${name} in`);
        await new Promise((r) => setTimeout(r, 200));
        events.push(`${name} out`);
      });
    await Promise.all([hold('first'), hold('second')]);
    expect(events).toEqual(['first in', 'first out', 'second in', 'second out']);
    expect(existsSync(dirs.lock)).toBe(false);
  });

  it('breaks a lock whose holder died', async () => {
    const dirs = leaseDirs(join(root, 'b'));
    mkdirSync(dirs.root, { recursive: true });
    writeFileSync(dirs.lock, String(deadPid()));
    const t0 = Date.now();
    expect(await withLeaseLock(dirs, () => 'got it', { timeoutMs: 5000 })).toBe('got it');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('times out on a lock held by a live process', async () => {
    const dirs = leaseDirs(join(root, 'c'));
    mkdirSync(dirs.root, { recursive: true });
    writeFileSync(dirs.lock, String(process.ppid));
    await expect(withLeaseLock(dirs, () => 0, { timeoutMs: 300 })).rejects.toThrow(/timed out waiting/);
  });

  it('ignores and removes leases and server records of dead processes', () => {
    const dirs = leaseDirs(join(root, 'd'));
    addLease(dirs);
    const dead = deadPid();
    expect(pidAlive(dead)).toBe(false);
    writeFileSync(join(dirs.leases, `${dead}.json`), '{}');
    expect(liveLeases(dirs)).toEqual([process.pid]);
    expect(readdirSync(dirs.leases)).toEqual([`${process.pid}.json`]);
    removeLease(dirs);
    expect(liveLeases(dirs)).toEqual([]);

    writeServerRecord(dirs, { pid: dead, address: '127.0.0.1:1', dbFile: '/x.db', startedAt: '' });
    expect(readServerRecord(dirs)).toBeUndefined();
    expect(existsSync(dirs.server)).toBe(false);
    // A live pid that is not a dev server on this DB file (a recycled pid) does not count either.
    writeServerRecord(dirs, {
      pid: process.pid,
      address: '127.0.0.1:1',
      dbFile: '/no/such.db',
      startedAt: '',
    });
    expect(readServerRecord(dirs)).toBeUndefined();
  });
});
