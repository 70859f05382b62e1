import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface TensorBoardLookup {
  /** Absolute path of the executable, or null when not installed. */
  path: string | null;
  /** Where we looked, for the "not installed" message. */
  searched: string[];
}

/**
 * Finds the `tensorboard` executable: $TENSORBOARD_BIN, then PATH, then the scripts folder of
 * `python3`. The last one matters because pip (pyenv, --user installs) puts console scripts in a
 * folder that is often not on PATH.
 */
export function findTensorBoard(env: NodeJS.ProcessEnv = process.env): TensorBoardLookup {
  const searched: string[] = [];
  const exe = process.platform === 'win32' ? 'tensorboard.exe' : 'tensorboard';
  if (env.TENSORBOARD_BIN) {
    searched.push(`$TENSORBOARD_BIN (${env.TENSORBOARD_BIN})`);
    if (isExecutable(env.TENSORBOARD_BIN)) return { path: env.TENSORBOARD_BIN, searched };
  }
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, exe);
    if (isExecutable(candidate)) return { path: candidate, searched: [...searched, 'PATH'] };
  }
  searched.push('PATH');
  const scripts = pythonScriptsDir(env);
  if (scripts) {
    searched.push(scripts);
    const candidate = join(scripts, exe);
    if (isExecutable(candidate)) return { path: candidate, searched };
  }
  return { path: null, searched };
}

function pythonScriptsDir(env: NodeJS.ProcessEnv): string | null {
  for (const python of ['python3', 'python']) {
    const r = spawnSync(python, ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'], {
      env,
      encoding: 'utf8',
      timeout: 15_000,
    });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
