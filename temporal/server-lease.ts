/**
 * One embedded dev server shared by every `npm run pipeline` on this machine (same state dir and
 * port), kept alive while any of them needs it. Each CLI session holds a lease, a file named after
 * its pid in `<stateDir>/embedded/leases/`; the session that starts the server records it in
 * `<stateDir>/embedded/server.json`. Leaving, a session removes its lease and, if no lease of a
 * live process is left, stops the recorded server (whoever started it). Leases of dead pids (a
 * CLI killed with SIGKILL) are ignored and removed. Decisions (start a server? stop it?) are taken
 * under a lock file (`lock`, exclusive create, with the holder's pid: a dead holder's is broken),
 * so two sessions never both start one, nor does one stop it while another is joining.
 * A server this machinery did not start (no server.json, e.g. a `temporal server start-dev` of the
 * user's) is used but never stopped.
 */
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

export interface ServerRecord {
  pid: number;
  address: string;
  dbFile: string;
  startedAt: string;
}

export interface LeaseDirs {
  root: string;
  leases: string;
  lock: string;
  server: string;
}

export function leaseDirs(stateDir: string): LeaseDirs {
  const root = join(stateDir, 'embedded');
  return {
    root,
    leases: join(root, 'leases'),
    lock: join(root, 'lock'),
    server: join(root, 'server.json'),
  };
}

/** True while a process with this pid exists (and is not a zombie). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // Linux: a zombie (exited, not yet reaped; e.g. under a container init that does not reap) is gone.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
}

function writeAtomicSync(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` holding the lock. A lock whose holder is dead (or that is older than `staleMs`, which
 * no decision takes) is broken.
 */
export async function withLeaseLock<T>(
  dirs: LeaseDirs,
  fn: () => Promise<T> | T,
  opts: { timeoutMs?: number; staleMs?: number } = {},
): Promise<T> {
  mkdirSync(dirs.root, { recursive: true });
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const staleMs = opts.staleMs ?? 110_000;
  for (;;) {
    try {
      writeFileSync(dirs.lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = Number.NaN;
      let age = 0;
      try {
        holder = Number(readFileSync(dirs.lock, 'utf8').trim() || 'NaN');
        age = Date.now() - statSync(dirs.lock).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      // An empty file: its holder is between create and write; give it a moment.
      if ((Number.isFinite(holder) && !pidAlive(holder)) || age > staleMs) {
        rmSync(dirs.lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for the embedded-server lock ${dirs.lock} (held by pid ${holder})`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(dirs.lock, { force: true });
  }
}

export function addLease(dirs: LeaseDirs, info: Record<string, unknown> = {}): string {
  mkdirSync(dirs.leases, { recursive: true });
  const file = join(dirs.leases, `${process.pid}.json`);
  writeAtomicSync(
    file,
    `${JSON.stringify({ pid: process.pid, since: new Date().toISOString(), argv: process.argv.slice(2), ...info })}\n`,
  );
  return file;
}

export function removeLease(dirs: LeaseDirs, pid = process.pid): void {
  rmSync(join(dirs.leases, `${pid}.json`), { force: true });
}

/** Pids holding a lease whose process is alive; leases of dead processes are removed. */
export function liveLeases(dirs: LeaseDirs): number[] {
  if (!existsSync(dirs.leases)) return [];
  const live: number[] = [];
  for (const name of readdirSync(dirs.leases)) {
    const m = /^(\d+)\.json$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pidAlive(pid)) live.push(pid);
    else rmSync(join(dirs.leases, name), { force: true });
  }
  return live.sort((a, b) => a - b);
}

/** The recorded embedded server if its process is still alive (a stale record is removed). */
export function readServerRecord(dirs: LeaseDirs): ServerRecord | undefined {
  const record = readJson<ServerRecord>(dirs.server);
  if (!record) return undefined;
  if (!pidAlive(record.pid) || !looksLikeServer(record)) {
    rmSync(dirs.server, { force: true });
    return undefined;
  }
  return record;
}

export function writeServerRecord(dirs: LeaseDirs, record: ServerRecord): void {
  mkdirSync(dirs.root, { recursive: true });
  writeAtomicSync(dirs.server, `${JSON.stringify(record, null, 2)}\n`);
}

export function clearServerRecord(dirs: LeaseDirs): void {
  rmSync(dirs.server, { force: true });
}

/** Guards against a recycled pid: on Linux the process must name the server's DB file. */
function looksLikeServer(record: ServerRecord): boolean {
  try {
    return readFileSync(`/proc/${record.pid}/cmdline`, 'utf8').includes(record.dbFile);
  } catch {
    return true; // no /proc (macOS): trust the pid
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopServerPid(pid: number, graceMs = 10_000): Promise<void> {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
