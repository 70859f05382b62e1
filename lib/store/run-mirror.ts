/**
 * A run folder that lives in an artifact store (`--runs-root s3://bucket/prefix`): the claim-check
 * pattern. Workflows pass the same run-dir-relative references as for a local run; each activity
 * works in a local mirror of the run (`<work dir>/<bucket>/<prefix>/<pipeline>/<run id>`, one per
 * host) and this module moves bytes between the two:
 *
 * - before a step, the folders of its upstream steps are fetched (verified against the manifest
 *   their publish wrote last), unless the mirror already holds them intact;
 * - a training step's checkpoints are published as they are reported, so a retry on another host
 *   fetches the newest one and resumes from it;
 * - after a step, its folder is published, manifest last: a reader that finds `_manifest.json`
 *   finds the complete step, and `resume` reuses a step only when its manifest and its result agree.
 *
 * Steps themselves never see the store: they read and write the local mirror as they would a
 * local run folder.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix, resolve } from 'node:path';
import type { StepContext, StepResult } from '../steps/contracts';
import { sha256File, writeJsonAtomic } from '../util/atomic';
import { defaultCacheDir } from './cache';
import { StoreError } from './errors';
import { joinKey } from './keys';
import { isRemoteStoreUrl, type OpenStoreOptions, openStore, parseS3Url } from './open';
import { fetchDir, publishDir, readManifest, STORE_MANIFEST } from './publish';
import type { ArtifactStore } from './types';

/** Where a worker keeps its local mirrors of remote runs (default `<cache dir>/work`). */
export const WORK_DIR_ENV = 'ANOMALY_SPOTTER_WORK_DIR';

export function defaultWorkDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env[WORK_DIR_ENV] || join(defaultCacheDir(env), 'work');
  return isAbsolute(dir) ? dir : resolve(dir);
}

/** True when a run's folder lives in a store (`s3://...`), not on this host's disk. */
export const isRemoteRunDir = (runDir: string): boolean => isRemoteStoreUrl(runDir);

/** Checkpoint folder names the trainers write (`epoch-0007`, `step-000100`) and the best one. */
const CHECKPOINT_NAME = /^(epoch-\d+|step-\d+)$/;
const BEST = 'best';

export interface RunMirrorOptions {
  workDir?: string;
  store?: OpenStoreOptions;
  env?: NodeJS.ProcessEnv;
}

export class RunMirror {
  /** Run-relative keys: the store is opened at the run's own URL. */
  readonly store: ArtifactStore;
  readonly localRunDir: string;
  private uploads: Promise<void> = Promise.resolve();
  private readonly uploadErrors: string[] = [];
  /** Run-relative path -> sha256 of every file this mirror published, so nothing goes up twice. */
  private readonly published = new Map<string, string>();

  private constructor(
    readonly runUrl: string,
    store: ArtifactStore,
    localRunDir: string,
    private readonly storeOptions: OpenStoreOptions,
  ) {
    this.store = store;
    this.localRunDir = localRunDir;
  }

  /** `s3://bucket/prefix`: the run's URL without `/<pipeline>/<run id>`. */
  get runsRootUrl(): string {
    return this.runUrl.replace(/\/+$/, '').split('/').slice(0, -2).join('/');
  }

  /** The local mirror of the runs root (the run's mirror is `<this>/<pipeline>/<run id>`). */
  get localRunsRoot(): string {
    return dirname(dirname(this.localRunDir));
  }

  /** The store at the runs root (for what lives beside the runs: champion pointers). Close it. */
  openRunsRoot(): ArtifactStore {
    return openStore(this.runsRootUrl, this.storeOptions);
  }

  static open(runUrl: string, opts: RunMirrorOptions = {}): RunMirror {
    const { bucket, prefix } = parseS3Url(runUrl);
    const workDir = opts.workDir ?? defaultWorkDir(opts.env);
    const localRunDir = join(workDir, bucket, ...prefix.split('/').filter(Boolean));
    const storeOptions = { ...opts.store, env: opts.env };
    return new RunMirror(runUrl, openStore(runUrl, storeOptions), localRunDir, storeOptions);
  }

  /** The step context with run and step folders in the local mirror (everything else unchanged). */
  localize(ctx: StepContext): StepContext {
    return { ...ctx, runDir: this.localRunDir, stepDir: this.localStepDir(ctx.category, ctx.step) };
  }

  localStepDir(category: string, step: string): string {
    return join(this.localRunDir, category, step);
  }

  /** Fetches every upstream step's folder that the mirror does not already hold intact. */
  async pullInputs(results: Iterable<StepResult>): Promise<{ fetched: string[] }> {
    const fetched: string[] = [];
    for (const r of results) {
      const dir = this.localStepDir(r.category, r.step);
      // One fetch per folder at a time in this process: two activities that need the same upstream
      // step (validate and checkpoint both read train's) would otherwise swap the folder under each other.
      const got = await oneAtATime(dir, async () => {
        if (await holdsIntact(this.localRunDir, dir, r)) return false;
        await fetchDir(this.store, joinKey(r.category, r.step), dir);
        return true;
      });
      if (got) fetched.push(`${r.category}/${r.step}`);
    }
    return { fetched };
  }

  /**
   * Before a (re)started training step: fetches the newest published checkpoint of the step (and
   * its `best` one) that the mirror lacks, so the trainer's own "newest valid checkpoint" finds it.
   * Returns the run-relative folders fetched.
   */
  async pullCheckpoints(ctx: StepContext): Promise<string[]> {
    const prefix = joinKey(ctx.category, ctx.step, 'checkpoints');
    const names = new Set<string>();
    for (const o of await this.store.list(`${prefix}/`)) {
      const rest = o.key.slice(prefix.length + 1).split('/');
      if (rest.length === 2 && rest[1] === STORE_MANIFEST) names.add(rest[0]);
    }
    const newest = [...names].filter((n) => CHECKPOINT_NAME.test(n)).sort();
    const wanted = [newest.at(-1), names.has(BEST) ? BEST : undefined].filter(
      (n): n is string => n !== undefined,
    );
    const fetched: string[] = [];
    for (const name of wanted) {
      const local = join(this.localStepDir(ctx.category, ctx.step), 'checkpoints', name);
      if (await stat(local).catch(() => null)) continue;
      const manifest = await fetchDir(this.store, joinKey(prefix, name), local);
      for (const f of manifest.files) this.published.set(joinKey(prefix, name, f.path), f.sha256);
      fetched.push(joinKey(prefix, name));
    }
    return fetched;
  }

  /**
   * Publishes a checkpoint folder (run-relative) in the background, with its step's `best`
   * checkpoint when there is one; uploads run one after another. A failure (a rotated-away folder,
   * a network error) is remembered for `flush`, never thrown into the training loop.
   */
  pushCheckpoint(relPath: string): void {
    const abs = join(this.localRunDir, relPath);
    const best = join(dirname(abs), BEST);
    const bestKey = posix.join(posix.dirname(relPath), BEST);
    this.uploads = this.uploads.then(async () => {
      try {
        await this.publish(abs, relPath);
        if (await stat(best).catch(() => null)) await this.publish(best, bestKey);
      } catch (err) {
        this.uploadErrors.push(`${relPath}: ${(err as Error).message}`);
      }
    });
  }

  /** Waits for checkpoint uploads; returns what failed (each already skipped, not fatal). */
  async flush(): Promise<string[]> {
    await this.uploads;
    return this.uploadErrors.splice(0);
  }

  /**
   * Publishes the step's whole folder (its result.json among the files, the manifest last); files
   * already published (its checkpoints) are listed without a second upload.
   */
  async pushStep(category: string, step: string): Promise<void> {
    await this.flush();
    await this.publish(this.localStepDir(category, step), joinKey(category, step));
  }

  /** Publishes a run-level folder of the mirror (e.g. `summary`). */
  async pushFolder(relPath: string): Promise<void> {
    await this.publish(join(this.localRunDir, relPath), relPath);
  }

  private async publish(localDir: string, relPrefix: string): Promise<void> {
    const stored = new Map<string, string>();
    for (const [path, sha] of this.published)
      if (path.startsWith(`${relPrefix}/`)) stored.set(path.slice(relPrefix.length + 1), sha);
    const manifest = await publishDir(this.store, localDir, relPrefix, { stored });
    for (const f of manifest.files) this.published.set(joinKey(relPrefix, f.path), f.sha256);
  }

  /**
   * For `resume`: the step's published result, when its manifest exists, lists result.json, and
   * every output the result names is in the manifest with the recorded sha256.
   */
  async loadPublishedResult(ctx: StepContext): Promise<{ result: StepResult } | { reason: string }> {
    return readPublishedStep(this.store, joinKey(ctx.category, ctx.step), ctx);
  }

  /** `<pipeline>/<run id>`: the run's key below the runs root. */
  get runKey(): string {
    return this.runUrl.replace(/\/+$/, '').split('/').slice(-2).join('/');
  }

  /**
   * The step cache of runs in a bucket (lib/steps/step-cache's key; the index beside the runs:
   * `<runs root>/.step-cache/<key>.json`): an earlier run's published step with this key, verified
   * against its manifest, brought into this run (fetched into the mirror, its result marked
   * `cachedFrom`, then published under this run like a step that ran); or why there is none.
   */
  async reuseCachedStep(ctx: StepContext, key: string): Promise<{ result: StepResult } | { reason: string }> {
    const root = this.openRunsRoot();
    try {
      let entry: { key?: string; run?: string; category?: string; step?: string };
      try {
        entry = JSON.parse((await root.getBytes(cacheEntryKey(key))).toString('utf8'));
      } catch (err) {
        if (err instanceof StoreError && err.code === 'NOT_FOUND')
          return { reason: 'no earlier run with these inputs' };
        throw err;
      }
      const run = entry.run;
      if (
        entry.key !== key ||
        !run ||
        run === this.runKey ||
        entry.category !== ctx.category ||
        entry.step !== ctx.step
      )
        return { reason: 'cache entry does not apply' };
      const prefix = joinKey(run, ctx.category, ctx.step);
      const hit = await readPublishedStep(root, prefix, ctx);
      if (!('result' in hit)) return { reason: `the cached run ${run}: ${hit.reason}` };
      await fetchDir(root, prefix, ctx.stepDir);
      await rm(join(ctx.stepDir, 'logs'), { recursive: true, force: true });
      const result: StepResult = { ...hit.result, summary: { ...hit.result.summary, cachedFrom: run } };
      await writeJsonAtomic(join(ctx.stepDir, 'result.json'), result);
      await this.pushStep(ctx.category, ctx.step);
      return { result };
    } finally {
      await root.close();
    }
  }

  /** Records this run's completed step under its key (the newest run wins). */
  async recordCachedStep(ctx: StepContext, key: string): Promise<void> {
    const root = this.openRunsRoot();
    try {
      const entry = { key, run: this.runKey, category: ctx.category, step: ctx.step };
      await root.putBytes(cacheEntryKey(key), `${JSON.stringify(entry)}\n`, {
        contentType: 'application/json',
      });
    } finally {
      await root.close();
    }
  }

  async close(): Promise<void> {
    await this.uploads;
    await this.store.close();
  }
}

const cacheEntryKey = (key: string) => `.step-cache/${key}.json`;

const locks = new Map<string, Promise<unknown>>();

/** Runs `fn` after any earlier call for the same key in this process has settled. */
async function oneAtATime<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const run = prev.catch(() => {}).then(fn);
  locks.set(key, run);
  try {
    return await run;
  } finally {
    if (locks.get(key) === run) locks.delete(key);
  }
}

/**
 * A published step (`prefix`: its folder in `store`), when its manifest exists, lists result.json,
 * the result is this step's, and every output it names is in the manifest with the recorded sha256.
 * A manifest or result the store cannot give (missing, corrupt) is a reason, not an error.
 */
async function readPublishedStep(
  store: ArtifactStore,
  prefix: string,
  ctx: Pick<StepContext, 'category' | 'step'>,
): Promise<{ result: StepResult } | { reason: string }> {
  let manifest: Awaited<ReturnType<typeof readManifest>>;
  try {
    manifest = await readManifest(store, prefix);
  } catch (err) {
    if (err instanceof StoreError && !err.retryable)
      return { reason: `not published (complete) at ${store.describe(prefix)}: ${err.code}` };
    throw err;
  }
  const entry = manifest.files.find((f) => f.path === 'result.json');
  if (!entry) return { reason: 'the published step has no result.json' };
  let result: StepResult;
  try {
    result = JSON.parse(
      (await store.getBytes(joinKey(prefix, 'result.json'), { sha256: entry.sha256 })).toString('utf8'),
    ) as StepResult;
  } catch (err) {
    if (err instanceof StoreError && err.retryable) throw err;
    return { reason: `published result.json unreadable (${(err as Error).message})` };
  }
  if (result.step !== ctx.step || result.category !== ctx.category)
    return { reason: `published result.json belongs to ${result.category}/${result.step}` };
  // Output paths are run-relative (`<category>/<step>/...`), whichever run the folder belongs to.
  const bySha = new Map(manifest.files.map((f) => [joinKey(ctx.category, ctx.step, f.path), f.sha256]));
  for (const out of result.outputs)
    if (bySha.get(out.path) !== out.sha256)
      return { reason: `artifact ${out.path} is not published with the recorded sha256` };
  return { result };
}

/** True when the mirror's copy of a step holds its result.json and every output with its sha256. */
async function holdsIntact(runDir: string, stepDir: string, r: StepResult): Promise<boolean> {
  try {
    const local = JSON.parse(await readFile(join(stepDir, 'result.json'), 'utf8')) as StepResult;
    if (local.finishedAt !== r.finishedAt) return false;
    for (const out of r.outputs) if ((await sha256File(join(runDir, out.path))) !== out.sha256) return false;
    return true;
  } catch {
    return false;
  }
}
