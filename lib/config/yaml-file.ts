import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { UserError, type UserErrorCode } from '../util/errors';
import { displayPath } from './paths';

export interface YamlFile {
  path: string;
  text: string;
  value: unknown;
}

/** Parses YAML text; syntax errors name file, line and column (one line per error). */
export function parseYaml(text: string, path: string, code: UserErrorCode): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      const where = pos ? `:${pos.line}:${pos.col}` : '';
      const msg = e.message.split('\n')[0];
      return `${displayPath(path)}${where}: YAML syntax error: ${msg}`;
    });
    throw new UserError(code, lines.join('\n'), { details: { file: path, problems: lines } });
  }
  return doc.toJS();
}

/** Reads and parses a YAML file; `null` when the file does not exist. */
export async function readYamlFile(path: string, code: UserErrorCode): Promise<YamlFile | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return { path, text, value: parseYaml(text, path, code) };
}
