import { isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file lives in <repo>/lib/config). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

export const DEFAULT_CONFIG_DIR = resolve(REPO_ROOT, 'config');
export const DEFAULT_PIPELINES_DIR = resolve(REPO_ROOT, 'pipelines');
export const DEFAULT_RUNS_ROOT = resolve(REPO_ROOT, 'runs');
export const DEFAULT_DEMO_DATA_DIR = resolve(REPO_ROOT, 'data', 'demo');

/** How a file is named in messages: relative to the working directory when below it, else absolute. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}
