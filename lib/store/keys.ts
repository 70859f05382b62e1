import { StoreError } from './errors';

/** Temp objects of the local store carry this name prefix; they are never listed. */
export const TEMP_PREFIX = '.tmp-';

/**
 * Checks an object key: '/'-separated, relative, no empty, '.' or '..' segments, no backslashes,
 * no segment that looks like one of the store's temp files. Returns it unchanged.
 */
export function checkKey(key: string, where: string): string {
  const bad = (why: string) =>
    new StoreError('INVALID_KEY', `${where}/${key}`, `invalid object key '${key}' in ${where}: ${why}`);
  if (key.length === 0) throw bad('empty');
  if (key.length > 1024) throw bad('longer than 1024 characters');
  if (key.includes('\\')) throw bad('contains a backslash (use / between folders)');
  if (key.includes('\0')) throw bad('contains a NUL character');
  for (const seg of key.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') throw bad(`has an empty, '.' or '..' segment`);
    if (seg.startsWith(TEMP_PREFIX)) throw bad(`a segment starts with '${TEMP_PREFIX}' (reserved)`);
  }
  return key;
}

/** Joins key parts with '/', dropping empty parts and stray slashes at the joints. */
export function joinKey(...parts: string[]): string {
  return parts
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .filter((p) => p.length > 0)
    .join('/');
}
