/**
 * Step caching across runs by content hash: a step whose inputs are unchanged since a completed step of
 * an earlier run reuses that step's outputs instead of running (a nightly retrain on unchanged data
 * redoes nothing). The key of a step is the sha256 of
 *   activity and step name, category, the code version (package version + git commit), the part of
 *   the merged training config the step reads (configSlice) and the step's params, the sha256 of every
 *   upstream output, and for `preprocess` (the only step that reads the dataset) the content hash of
 *   the category's dataset files.
 * The index is `<runs root>/.step-cache/<key>.json`, naming the run folder that holds the outputs. A hit
 * is used only when that run's result.json still lists outputs whose files hash as recorded; its step
 * folder is then hard-linked (copied across file systems) into this run, and the result is recorded with
 * `cachedFrom`. Steps write their files by rename, so hard links are never modified in place.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { REPO_ROOT } from '../config/paths';
import type { TrainingConfig } from '../config/schema';
import { sha256, sha256File, writeJsonAtomic } from '../util/atomic';
import type { StepActivity, StepContext, StepResult } from './contracts';

export const STEP_CACHE_DIR = '.step-cache';
const KEY_FORMAT = 'anomaly-spotter-step-cache/1';
/** Folders of a step that belong to its attempts, not to its result. */
const NOT_ADOPTED = new Set(['logs', 'result.json']);

let codeVersion: string | undefined;

/** package.json version + the git commit of the checkout (when it is one). */
export async function stepCodeVersion(): Promise<string> {
  if (codeVersion) return codeVersion;
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version?: string };
  let commit = 'no-git';
  try {
    let gitDir = join(REPO_ROOT, '.git');
    // A worktree's .git is a file naming its git dir; refs then live in the common dir.
    const dotGit = await readFile(gitDir, 'utf8').catch(() => null);
    if (dotGit?.startsWith('gitdir: ')) gitDir = dotGit.slice(8).trim();
    const head = (await readFile(join(gitDir, 'HEAD'), 'utf8')).trim();
    if (!head.startsWith('ref: ')) commit = head;
    else {
      const ref = head.slice(5);
      const common = (await readFile(join(gitDir, 'commondir'), 'utf8').catch(() => '.')).trim();
      const dirs = [gitDir, join(gitDir, common)];
      for (const d of dirs) {
        const loose = await readFile(join(d, ref), 'utf8').catch(() => null);
        if (loose) {
          commit = loose.trim();
          break;
        }
        const packed = await readFile(join(d, 'packed-refs'), 'utf8').catch(() => '');
        const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`));
        if (line) {
          commit = line.split(' ')[0];
          break;
        }
      }
    }
  } catch {
    // No git checkout (a release tarball): the version alone (documented).
  }
  codeVersion = `${pkg.version ?? '0'}+${commit}`;
  return codeVersion;
}

/** Every file below `dir`, hidden ones (`.DS_Store`, a mirror's `.last-used`) left out. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** sha256 over every (not hidden) file of `<dataRoot>/<category>` (relative path and content), in path order. */
export async function datasetContentHash(dataRoot: string, category: string): Promise<string> {
  const root = join(dataRoot, category);
  const h = createHash('sha256');
  for (const f of await filesUnder(root)) {
    h.update(`${relative(root, f)}\0`);
    await new Promise<void>((resolve, reject) => {
      createReadStream(f)
        .on('data', (c) => h.update(c))
        .on('end', () => resolve())
        .on('error', reject);
    });
    h.update('\0');
  }
  return h.digest('hex');
}

/**
 * What of the training config a step's outputs depend on. preprocess reads only the decode and split
 * settings; train and validate read everything but the threshold settings; checkpoint and later
 * steps record the whole config in the package's metadata, so all of it.
 */
export function configSlice(config: TrainingConfig, activity: StepActivity): Partial<TrainingConfig> {
  if (activity === 'preprocess')
    return {
      image_size: config.image_size,
      val_fraction: config.val_fraction,
      seed: config.seed,
      data: config.data,
    };
  if (activity === 'train' || activity === 'validate') {
    const { threshold: _, ...rest } = config;
    return rest;
  }
  return config;
}

export async function stepCacheKey(ctx: StepContext, activity: StepActivity): Promise<string> {
  const inputs = Object.entries(ctx.inputs)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([act, r]) => [act, (r?.outputs ?? []).map((o) => [o.name, o.sha256])]);
  return sha256(
    JSON.stringify({
      format: KEY_FORMAT,
      activity,
      step: ctx.step,
      category: ctx.category,
      code: await stepCodeVersion(),
      config: configSlice(ctx.config, activity),
      params: ctx.params,
      inputs,
      dataset: activity === 'preprocess' ? await datasetContentHash(ctx.dataRoot, ctx.category) : null,
    }),
  );
}

interface CacheEntry {
  key: string;
  runDir: string;
  category: string;
  step: string;
}

const runsRoot = (ctx: StepContext) => dirname(dirname(ctx.runDir));
const entryPath = (ctx: StepContext, key: string) => join(runsRoot(ctx), STEP_CACHE_DIR, `${key}.json`);

/** The earlier run's verified result for this key, or why there is none. */
export async function findCachedStep(
  ctx: StepContext,
  key: string,
): Promise<{ result: StepResult; runDir: string } | { reason: string }> {
  let entry: CacheEntry;
  try {
    entry = JSON.parse(await readFile(entryPath(ctx, key), 'utf8')) as CacheEntry;
  } catch {
    return { reason: 'no earlier run with these inputs' };
  }
  if (entry.key !== key || entry.runDir === ctx.runDir) return { reason: 'cache entry does not apply' };
  const stepDir = join(entry.runDir, entry.category, entry.step);
  let result: StepResult;
  try {
    result = JSON.parse(await readFile(join(stepDir, 'result.json'), 'utf8')) as StepResult;
  } catch {
    return { reason: `the cached run ${entry.runDir} no longer has ${entry.category}/${entry.step}` };
  }
  for (const o of result.outputs) {
    const actual = await sha256File(join(entry.runDir, o.path)).catch(() => null);
    if (actual !== o.sha256)
      return { reason: `cached artifact ${o.path} of ${entry.runDir} is missing or changed` };
  }
  return { result, runDir: entry.runDir };
}

async function linkTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (NOT_ADOPTED.has(e.name) || e.name.endsWith('.tmp')) continue;
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory()) await linkTree(src, dst);
    else if (e.isFile())
      await link(src, dst).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return;
        await copyFile(src, dst); // another file system (EXDEV) or no hard links
      });
  }
}

/** Brings the cached step's folder into this run and writes its result.json (outputs verified again). */
export async function adoptCachedStep(
  ctx: StepContext,
  hit: { result: StepResult; runDir: string },
): Promise<StepResult> {
  await linkTree(join(hit.runDir, ctx.category, ctx.step), ctx.stepDir);
  for (const o of hit.result.outputs) {
    if ((await sha256File(join(ctx.runDir, o.path))) !== o.sha256)
      throw new Error(`step cache: ${o.path} differs after linking it from ${hit.runDir}`);
  }
  const cachedFrom = relative(runsRoot(ctx), hit.runDir);
  const result: StepResult = { ...hit.result, summary: { ...hit.result.summary, cachedFrom } };
  await writeJsonAtomic(join(ctx.stepDir, 'result.json'), result);
  return result;
}

/** Records a completed step under its key (the newest run wins). */
export async function recordCachedStep(ctx: StepContext, key: string): Promise<void> {
  const entry: CacheEntry = { key, runDir: ctx.runDir, category: ctx.category, step: ctx.step };
  await writeJsonAtomic(entryPath(ctx, key), entry);
}

/** findCachedStep then adoptCachedStep: the earlier run's outputs in this run, or why not. */
export async function reuseCachedStep(
  ctx: StepContext,
  key: string,
): Promise<{ result: StepResult } | { reason: string }> {
  const hit = await findCachedStep(ctx, key);
  return 'result' in hit ? { result: await adoptCachedStep(ctx, hit) } : hit;
}
