/**
 * `npm run bench:chaos [-- --seed 1 --categories 3 --epochs 12 --kills 3 --pauses 2 --restarts 2 --json out.json]`
 *
 * Chaos run of the real thing: `npm run pipeline`'s command line in embedded mode (its own dev
 * server, worker processes and the real steps) on tiny synthetic data, twice with the same seed:
 * once undisturbed, once while a seeded schedule SIGKILLs training workers, pauses one
 * (SIGSTOP, SIGCONT after --pause-ms, longer than the train step's heartbeat timeout so that the
 * attempt is retried elsewhere) and restarts the dev server (same SQLite file). Training is
 * deterministic and resumes from checkpoints, so both runs must end with identical model-package
 * weights and identical report metrics. Prints the faults injected and the wall-time overhead.
 * test/chaos.test.ts runs a small schedule of this in `npm test`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { synthesizeDataset } from '../lib/data/synth';
import { freePort } from '../lib/util/free-port';
import { isPortOpen, startDevServer } from '../temporal/dev-server';
import {
  leaseDirs,
  pidAlive,
  readServerRecord,
  stopServerPid,
  writeServerRecord,
} from '../temporal/server-lease';
import { EMBEDDED_PORT_ENV, EMBEDDED_UI_PORT, STATE_DIR_ENV } from '../temporal/session';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const CATEGORY_POOL = ['chip', 'weave', 'marble', 'mesh', 'washer'];

export type FaultKind = 'kill-train-worker' | 'pause-train-worker' | 'restart-server';

export interface FaultEvent {
  kind: FaultKind;
  atMs: number;
  detail: string;
}

export interface ChaosOptions {
  seed: number;
  categories: number;
  epochs: number;
  imageSize?: number;
  trainGood?: number;
  trainSlots?: number;
  kills: number;
  pauses: number;
  restarts: number;
  /** SIGSTOP duration (default: heartbeat + 4 s). */
  pauseMs?: number;
  /** Train step heartbeat timeout in the chaos pipeline (default 8 s). */
  heartbeatS?: number;
  /** Extra delay before each fault once its point in training is reached: uniform in [min, max] ms (seeded). */
  gapMs?: [number, number];
  workDir?: string;
  keep?: boolean;
  log?: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  categories: string[];
  baselineMs: number;
  chaosMs: number;
  overheadMs: number;
  overheadPct: number;
  faults: FaultEvent[];
  /** Differences between the undisturbed and the chaos run (empty: identical). */
  differences: string[];
  compared: { packageFiles: number; metrics: number };
  baselineExit: number | null;
  chaosExit: number | null;
  chaosStdout: string;
}

/** mulberry32: a small seeded PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freeEmbeddedPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port < 64_000 && !(await isPortOpen(`127.0.0.1:${port + 1000}`))) return port;
  }
}

interface Cli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startCli(args: string[], stateDir: string, port: number): Cli {
  const { TEMPORAL_ADDRESS: _c, MLFLOW_TRACKING_URI: _m, ...env } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'client.ts'), ...args], {
    cwd: REPO,
    env: { ...env, [STATE_DIR_ENV]: stateDir, [EMBEDDED_PORT_ENV]: String(port), LOG_LEVEL: 'warn' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Live training worker children of the embedded workers (from their log lines). */
function trainWorkerPids(stateDir: string): number[] {
  const logs = join(stateDir, 'logs');
  if (!existsSync(logs)) return [];
  const latest = new Map<string, number>();
  for (const name of readdirSync(logs).filter((n) => n.startsWith('worker-'))) {
    const text = readFileSync(join(logs, name), 'utf8');
    for (const m of text.matchAll(/started training worker (\S+) \(pid (\d+)/g))
      latest.set(m[1], Number(m[2]));
  }
  return [...latest.values()].filter(pidAlive);
}

/** Training workers running a train attempt right now (pid from the attempt log's last attempt). */
function busyTrainPids(runDir: string, categories: string[]): number[] {
  const pids: number[] = [];
  for (const category of categories) {
    const logs = join(runDir, category, 'train', 'logs');
    if (!existsSync(logs)) continue;
    const last = readdirSync(logs)
      .map((n) => Number(/^attempt-(\d+)\.log$/.exec(n)?.[1] ?? 0))
      .sort((a, b) => b - a)[0];
    if (!last) continue;
    const lines = readFileSync(join(logs, `attempt-${last}.log`), 'utf8')
      .split('\n')
      .filter(Boolean);
    if (lines.some((l) => /"msg":"attempt (finished|failed)"/.test(l))) continue;
    const pid = Number(/"pid":(\d+)/.exec(lines[0] ?? '')?.[1]);
    if (pidAlive(pid)) pids.push(pid);
  }
  return pids;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function filesBelow(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesBelow(p));
    else out.push(p);
  }
  return out.sort();
}

/** Keys whose values are timings, times or paths (differ between any two runs). */
const VOLATILE =
  /(^|_)(ms|seconds|time|duration)|Ms$|Seconds$|At$|latency|perSec|PerSec|path|dir|Dir|Path|host|pid|created|date|run_?id|runId|rss/i;

function metricsOf(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) metricsOf(v, `${prefix}[${i}]`, out);
  } else if (value && typeof value === 'object') {
    // Resource measurements (latency, memory) differ between any two runs.
    const name = (value as { name?: unknown }).name;
    if (typeof name === 'string' && /latency|memory|rss/i.test(name)) return out;
    for (const [k, v] of Object.entries(value))
      if (!VOLATILE.test(k)) metricsOf(v, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix] = value;
  return out;
}

/** Weights of every model package (binary files) and every report metric, per category. */
function fingerprint(
  runDir: string,
  categories: string[],
): { files: Map<string, string>; metrics: Map<string, unknown> } {
  const files = new Map<string, string>();
  const metrics = new Map<string, unknown>();
  for (const category of categories) {
    const pkgDir = join(runDir, category, 'checkpoint');
    for (const f of filesBelow(pkgDir)) {
      if (f.includes(`${join('checkpoint', 'logs')}`) || f.endsWith('result.json')) continue;
      if (/\.(bin|onnx)$/.test(f)) files.set(relative(runDir, f), sha256(f));
    }
    const reportJson = filesBelow(join(runDir, category, 'report')).find((f) => f.endsWith('report.json'));
    if (reportJson) {
      const m = metricsOf(JSON.parse(readFileSync(reportJson, 'utf8')));
      for (const [k, v] of Object.entries(m)) metrics.set(`${category}/report.json:${k}`, v);
    } else metrics.set(`${category}/report.json`, 'missing');
  }
  return { files, metrics };
}

function compare(a: ReturnType<typeof fingerprint>, b: ReturnType<typeof fingerprint>): string[] {
  const diffs: string[] = [];
  const keys = (x: Map<string, unknown>, y: Map<string, unknown>) => new Set([...x.keys(), ...y.keys()]);
  const rel = (k: string) => k.split('/').slice(1).join('/');
  const byRel = (m: Map<string, unknown>) => new Map([...m].map(([k, v]) => [rel(k), v]));
  const fa = byRel(a.files);
  const fb = byRel(b.files);
  for (const k of keys(fa, fb))
    if (fa.get(k) !== fb.get(k)) diffs.push(`package file ${k}: ${fa.get(k)} vs ${fb.get(k)}`);
  for (const k of keys(a.metrics, b.metrics))
    if (JSON.stringify(a.metrics.get(k)) !== JSON.stringify(b.metrics.get(k)))
      diffs.push(`metric ${k}: ${JSON.stringify(a.metrics.get(k))} vs ${JSON.stringify(b.metrics.get(k))}`);
  return diffs;
}

function writePipeline(
  dir: string,
  opts: Required<Pick<ChaosOptions, 'epochs' | 'imageSize' | 'heartbeatS' | 'seed'>>,
): string {
  const quick = parseYaml(readFileSync(join(REPO, 'pipelines', 'quick.yaml'), 'utf8')) as {
    steps: Array<Record<string, unknown>>;
  } & Record<string, unknown>;
  const pipeline = {
    ...quick,
    name: 'chaos',
    training: {
      image_size: opts.imageSize,
      epochs: opts.epochs,
      batch_size: 4,
      seed: opts.seed,
      model: { widths: [4, 8] },
      early_stopping: { patience: 1000 },
      checkpoint: { every_epochs: 1, keep_last: 2 },
    },
    steps: quick.steps.map((s) =>
      s.name === 'train'
        ? {
            ...s,
            heartbeat: `${opts.heartbeatS}s`,
            retry: { maximum_attempts: 20, initial_interval: '1s', backoff: 1, maximum_interval: '2s' },
          }
        : s,
    ),
  };
  const file = join(dir, 'chaos.yaml');
  writeFileSync(file, stringifyYaml(pipeline));
  return file;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const imageSize = options.imageSize ?? 32;
  const heartbeatS = options.heartbeatS ?? 8;
  const pauseMs = options.pauseMs ?? heartbeatS * 1000 + 4000;
  const [gapMin, gapMax] = options.gapMs ?? [0, 1000];
  const categories = CATEGORY_POOL.slice(0, options.categories);
  const work = options.workDir ?? mkdtempSync(join(tmpdir(), 'anomaly-chaos-'));
  mkdirSync(work, { recursive: true });
  const cleanup: Array<() => void> = [];
  try {
    await synthesizeDataset(join(work, 'data'), {
      size: imageSize,
      categories,
      trainGood: options.trainGood ?? 12,
      testGood: 2,
      perDefect: 1,
      seed: options.seed,
    });
    const pipelineFile = writePipeline(work, {
      epochs: options.epochs,
      imageSize,
      heartbeatS,
      seed: options.seed,
    });
    const args = (runId: string) => [
      '--pipeline',
      pipelineFile,
      '--data-root',
      join(work, 'data'),
      '--runs-root',
      join(work, 'runs'),
      '--run-id',
      runId,
      '--train-slots',
      String(options.trainSlots ?? 2),
      '--no-progress',
      // The reference and the chaos run share inputs: the step cache would make the second a copy.
      '--no-cache',
    ];
    const track = (cli: Cli, stateDir: string) =>
      cleanup.push(() => {
        try {
          if (cli.child.pid) process.kill(-cli.child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        const record = readServerRecord(leaseDirs(stateDir));
        if (record) void stopServerPid(record.pid, 1000);
      });

    // 1. Undisturbed.
    const calmState = join(work, 'state-calm');
    const calmPort = await freeEmbeddedPort();
    log(
      `chaos: undisturbed run (${categories.join(', ')}, ${options.epochs} epochs, seed ${options.seed}) ...`,
    );
    const t0 = Date.now();
    const calm = startCli(args('calm'), calmState, calmPort);
    track(calm, calmState);
    const calmExit = await calm.exited;
    const baselineMs = Date.now() - t0;
    if (calmExit !== 0)
      throw new Error(`undisturbed run exited ${calmExit}:\n${calm.stdout()}\n${calm.stderr()}`);
    log(`chaos: undisturbed run took ${(baselineMs / 1000).toFixed(1)} s`);

    // 2. The same under a seeded fault schedule.
    const random = rng(options.seed);
    const schedule: FaultKind[] = [
      ...Array<FaultKind>(options.kills).fill('kill-train-worker'),
      ...Array<FaultKind>(options.pauses).fill('pause-train-worker'),
      ...Array<FaultKind>(options.restarts).fill('restart-server'),
    ];
    for (let i = schedule.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [schedule[i], schedule[j]] = [schedule[j], schedule[i]];
    }
    const stateDir = join(work, 'state-chaos');
    const port = await freeEmbeddedPort();
    const runDir = join(work, 'runs', 'chaos', 'chaos');
    const faults: FaultEvent[] = [];
    log(`chaos: disturbed run, schedule ${schedule.join(', ') || '(none)'} ...`);
    const t1 = Date.now();
    const cli = startCli(args('chaos'), stateDir, port);
    track(cli, stateDir);
    let finished = false;
    const chaosExit = cli.exited.then((code) => {
      finished = true;
      return code;
    });
    const resumes: Promise<void>[] = [];
    const paused = new Set<number>();
    const inject = async (): Promise<void> => {
      // Fault i lands when training has reached about (i + 1) / (n + 1) of its epochs (seeded
      // jitter), so that every fault hits a run that is still training, however fast it is.
      const epochReached = (): number =>
        Math.max(
          0,
          ...categories.map((c) =>
            Math.max(
              0,
              ...readdirSafe(join(runDir, c, 'train', 'checkpoints')).map((n) =>
                Number(/^epoch-(\d+)$/.exec(n)?.[1] ?? 0),
              ),
            ),
          ),
        );
      for (const [i, kind] of schedule.entries()) {
        // Spread over 10-60 % of the epochs: faults take time themselves (a restart ~3 s), and the
        // last one must still find training to disturb.
        const jitter = (random() - 0.5) * 0.5;
        const fraction = 0.1 + (0.5 * (i + 0.5 + jitter)) / schedule.length;
        const target = Math.max(1, Math.floor(options.epochs * fraction));
        while (!finished && epochReached() < target) await sleep(100);
        await sleep(gapMin + random() * (gapMax - gapMin));
        if (finished) return;
        const at = Date.now() - t1;
        if (kind === 'restart-server') {
          const dirs = leaseDirs(stateDir);
          const record = readServerRecord(dirs);
          if (!record) continue;
          await stopServerPid(record.pid);
          const dbFile = join(stateDir, 'temporal.db');
          const server = await startDevServer({
            port,
            uiPort: port + (EMBEDDED_UI_PORT - 7233),
            dbFile,
            logFile: join(stateDir, 'temporal-server.log'),
            detached: true,
          });
          server.process.unref();
          if (server.process.pid)
            writeServerRecord(dirs, {
              pid: server.process.pid,
              address: server.address,
              dbFile,
              startedAt: new Date().toISOString(),
            });
          faults.push({
            kind,
            atMs: at,
            detail: `server pid ${record.pid} -> ${server.process.pid} (down ${Date.now() - t1 - at} ms)`,
          });
        } else {
          // A worker in the middle of a training attempt, else any training worker.
          // Not one that is paused right now: each fault on its own worker.
          const candidates = (): number[] => trainWorkerPids(stateDir).filter((p) => !paused.has(p));
          let all = candidates();
          let busy = busyTrainPids(runDir, categories).filter((p) => all.includes(p));
          // Between attempts (a retry about to start): wait a little for a busy one.
          for (let wait = 0; busy.length === 0 && wait < 50 && !finished; wait++) {
            await sleep(100);
            all = candidates();
            busy = busyTrainPids(runDir, categories).filter((p) => all.includes(p));
          }
          const pids = busy.length > 0 ? busy : all;
          if (pids.length === 0) continue;
          const pid = pids[Math.floor(random() * pids.length)];
          if (kind === 'kill-train-worker') {
            process.kill(pid, 'SIGKILL');
            faults.push({
              kind,
              atMs: at,
              detail: `SIGKILL training worker pid ${pid}${busy.length ? ' (training)' : ' (idle)'}`,
            });
          } else {
            process.kill(pid, 'SIGSTOP');
            paused.add(pid);
            // SIGCONT later; the schedule goes on meanwhile.
            resumes.push(
              sleep(pauseMs).then(() => {
                paused.delete(pid);
                try {
                  process.kill(pid, 'SIGCONT');
                } catch {
                  /* gone */
                }
              }),
            );
            faults.push({
              kind,
              atMs: at,
              detail: `SIGSTOP training worker pid ${pid}${busy.length ? ' (training)' : ' (idle)'} for ${pauseMs} ms`,
            });
          }
        }
        log(`chaos: t=${(at / 1000).toFixed(1)} s ${faults.at(-1)?.kind}: ${faults.at(-1)?.detail}`);
      }
    };
    const injecting = inject();
    const code = await chaosExit;
    await injecting;
    await Promise.all(resumes);
    const chaosMs = Date.now() - t1;
    log(`chaos: disturbed run took ${(chaosMs / 1000).toFixed(1)} s, exit ${code}`);

    const a = fingerprint(join(work, 'runs', 'chaos', 'calm'), categories);
    const b = fingerprint(runDir, categories);
    const differences = code === 0 ? compare(a, b) : [`the chaos run exited ${code}: ${cli.stderr()}`];
    if (a.files.size === 0) differences.push('no model package files found');
    return {
      seed: options.seed,
      categories,
      baselineMs,
      chaosMs,
      overheadMs: chaosMs - baselineMs,
      overheadPct: Math.round(((chaosMs - baselineMs) / baselineMs) * 1000) / 10,
      faults,
      differences,
      compared: { packageFiles: a.files.size, metrics: a.metrics.size },
      baselineExit: calmExit,
      chaosExit: code,
      chaosStdout: cli.stdout(),
    };
  } finally {
    for (const fn of cleanup) fn();
    if (!options.keep && !options.workDir) rmSync(work, { recursive: true, force: true });
  }
}

function flag(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const jsonOut = argv.includes('--json') ? argv[argv.indexOf('--json') + 1] : undefined;
  const report = await runChaos({
    seed: flag(argv, 'seed', 1),
    categories: flag(argv, 'categories', 3),
    epochs: flag(argv, 'epochs', 12),
    kills: flag(argv, 'kills', 3),
    pauses: flag(argv, 'pauses', 2),
    restarts: flag(argv, 'restarts', 2),
    keep: argv.includes('--keep'),
  });
  const { chaosStdout: _o, ...summary } = report;
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(summary, null, 2)}\n`);
  process.exit(report.differences.length === 0 ? 0 : 1);
}
