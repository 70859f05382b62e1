/**
 * The bound on a worker's work dir (run mirrors and dataset mirrors, lib/store/run-mirror and
 * dataset-mirror). Everything in it is a copy of what the bucket holds, so a mirror can go as soon
 * as no activity uses it: least recently used first, until the folder is under
 * `$ANOMALY_SPOTTER_WORK_MAX_BYTES` (default 20 GiB).
 *
 * A mirror is a folder holding `.last-used` (touched whenever an activity takes it). While an
 * activity works in it, it also holds `.in-use/<pid>-<n>`; a mirror with an entry of a live process
 * is never removed, whichever process (the CPU worker, a training child) prunes.
 */
import { mkdir, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const WORK_MAX_BYTES_ENV = 'ANOMALY_SPOTTER_WORK_MAX_BYTES';
export const DEFAULT_WORK_MAX_BYTES = 20 * 1024 ** 3;
const LAST_USED = '.last-used';
const IN_USE = '.in-use';

export function workMaxBytes(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env[WORK_MAX_BYTES_ENV]);
  return Number.isFinite(v) && v > 0 ? v : DEFAULT_WORK_MAX_BYTES;
}

let holds = 0;

/** Marks `dir` as used now and in use by this process until the returned release is called. */
export async function holdMirror(dir: string): Promise<() => Promise<void>> {
  await mkdir(join(dir, IN_USE), { recursive: true });
  const now = new Date();
  await writeFile(join(dir, LAST_USED), '');
  await utimes(join(dir, LAST_USED), now, now);
  const entry = join(dir, IN_USE, `${process.pid}-${holds++}`);
  await writeFile(entry, '');
  return async () => {
    await rm(entry, { force: true });
  };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

async function inUse(dir: string): Promise<boolean> {
  for (const e of await readdir(join(dir, IN_USE)).catch(() => [] as string[])) {
    if (alive(Number(e.split('-')[0]))) return true;
    await rm(join(dir, IN_USE, e), { force: true }); // left by a process that died
  }
  return false;
}

async function bytesOf(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await bytesOf(p);
    else total += (await stat(p).catch(() => null))?.size ?? 0;
  }
  return total;
}

interface Mirror {
  dir: string;
  lastUsed: number;
  bytes: number;
}

async function findMirrors(dir: string, out: Mirror[]): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  if (entries.some((e) => e.name === LAST_USED)) {
    const bytes = await bytesOf(dir);
    out.push({ dir, lastUsed: (await stat(join(dir, LAST_USED))).mtimeMs, bytes });
    return bytes;
  }
  let total = 0;
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await findMirrors(p, out);
    else total += (await stat(p).catch(() => null))?.size ?? 0;
  }
  return total;
}

/** Removes least recently used mirrors no live process holds until `workDir` is under `maxBytes`. */
export async function pruneWorkDir(
  workDir: string,
  maxBytes: number = workMaxBytes(),
): Promise<{ removed: string[]; bytes: number }> {
  const mirrors: Mirror[] = [];
  let bytes = await findMirrors(workDir, mirrors);
  const removed: string[] = [];
  for (const m of mirrors.sort((a, b) => a.lastUsed - b.lastUsed)) {
    if (bytes <= maxBytes) break;
    if (await inUse(m.dir)) continue;
    await rm(m.dir, { recursive: true, force: true });
    bytes -= m.bytes;
    removed.push(m.dir);
  }
  return { removed, bytes };
}
