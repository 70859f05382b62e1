import { isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file lives in <repo>/lib/config). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

export const DEFAULT_CONFIG_DIR = resolve(REPO_ROOT, 'config');
export const DEFAULT_PIPELINES_DIR = resolve(REPO_ROOT, 'pipelines');
export const DEFAULT_RUNS_ROOT = resolve(REPO_ROOT, 'runs');
/** Overrides DEFAULT_RUNS_ROOT for `npm run pipeline` (e.g. `s3://bucket/runs` on a cluster). */
export const RUNS_ROOT_ENV = 'ANOMALY_SPOTTER_RUNS_ROOT';
export const DEFAULT_DEMO_DATA_DIR = resolve(REPO_ROOT, 'data', 'demo');

/** How a file is named in messages: relative to the working directory when below it, else absolute. */
export function displayPath(path: string): string {
  // URLs (a run in object storage: s3://bucket/...) are shown as they are.
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) return path;
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}
