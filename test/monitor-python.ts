import { spawnSync } from 'node:child_process';

/** True when `python3 -c "import <module>"` succeeds (tests that need a real Python tool skip otherwise). */
export function pythonHas(module: string): boolean {
  const r = spawnSync('python3', ['-c', `import ${module}`], { stdio: 'ignore', timeout: 60_000 });
  return r.status === 0;
}

/** Runs a Python script, returns stdout; throws with stderr on failure. */
export function runPython(script: string, args: string[] = []): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
