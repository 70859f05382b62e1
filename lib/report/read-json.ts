import { readFile } from 'node:fs/promises';
import { UserError } from '../util/errors';

/** Reads a JSON file written by an earlier step; a missing or broken file names itself in the error. */
export async function readJson<T>(path: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `${path}: cannot read JSON (${(err as Error).message}); rerun the step that writes it`,
      {
        cause: err,
      },
    );
  }
}
