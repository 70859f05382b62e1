/**
 * Injected I/O faults, for tests and chaos runs of the real processes (a worker is a separate
 * process, so the switch is an environment variable it inherits):
 *
 *   ANOMALY_SPOTTER_INJECT_FAULTS="write:ENOSPC:path=checkpoints/.epoch-0003:times=1;..."
 *
 * Each `;`-separated rule is `<point>:<errno code>[:path=<substring>][:after=<n>][:times=<n>]`:
 * of the writes at `<point>` whose path contains the substring, the first `after` (default 0)
 * pass, the next `times` (default 1) fail with that code; counted per process. Points: `write` (every atomic file write, lib/util/atomic.ts). In-process
 * tests can set rules with setInjectedFaults(). Unset, this costs one lookup per write.
 */
export const INJECT_FAULTS_ENV = 'ANOMALY_SPOTTER_INJECT_FAULTS';

export type FaultPoint = 'write';

interface FaultRule {
  point: FaultPoint;
  code: string;
  path?: string;
  skip: number;
  remaining: number;
}

const MESSAGES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EIO: 'i/o error',
  EDQUOT: 'disk quota exceeded',
};

let rules: FaultRule[] | undefined;

export function parseFaultRules(spec: string): FaultRule[] {
  return spec
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((rule) => {
      const [point, code, ...opts] = rule.split(':');
      if (point !== 'write' || !code) throw new Error(`${INJECT_FAULTS_ENV}: bad rule '${rule}'`);
      const parsed: FaultRule = { point, code, skip: 0, remaining: 1 };
      for (const opt of opts) {
        const [key, value] = [opt.slice(0, opt.indexOf('=')), opt.slice(opt.indexOf('=') + 1)];
        if (key === 'path') parsed.path = value;
        else if (key === 'times' && /^\d+$/.test(value)) parsed.remaining = Number(value);
        else if (key === 'after' && /^\d+$/.test(value)) parsed.skip = Number(value);
        else throw new Error(`${INJECT_FAULTS_ENV}: bad option '${opt}' in '${rule}'`);
      }
      return parsed;
    });
}

/** Replaces the rules (in-process tests); `undefined` goes back to the environment's. */
export function setInjectedFaults(spec: string | undefined): void {
  rules = spec === undefined ? undefined : parseFaultRules(spec);
}

/** The injected error if a rule matches this write (the caller throws it), else undefined. */
export function injectedFault(point: FaultPoint, path: string): NodeJS.ErrnoException | undefined {
  rules ??= parseFaultRules(process.env[INJECT_FAULTS_ENV] ?? '');
  if (rules.length === 0) return undefined;
  const rule = rules.find((r) => r.point === point && r.remaining > 0 && (!r.path || path.includes(r.path)));
  if (!rule) return undefined;
  if (rule.skip > 0) {
    rule.skip--;
    return undefined;
  }
  rule.remaining--;
  const err = new Error(
    `${rule.code}: ${MESSAGES[rule.code] ?? 'injected fault'}, write '${path}' (injected)`,
  ) as NodeJS.ErrnoException;
  err.code = rule.code;
  err.syscall = 'write';
  err.path = path;
  return err;
}
