/** Minimal validation of 5-field cron expressions (the form Temporal schedules accept). */
const FIELDS = [
  { name: 'minute', lo: 0, hi: 59 },
  { name: 'hour', lo: 0, hi: 23 },
  { name: 'day-of-month', lo: 1, hi: 31 },
  {
    name: 'month',
    lo: 1,
    hi: 12,
    names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'],
  },
  { name: 'day-of-week', lo: 0, hi: 7, names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] },
] as const;

function valueOk(v: string, f: (typeof FIELDS)[number]): boolean {
  if (/^\d+$/.test(v)) return Number(v) >= f.lo && Number(v) <= f.hi;
  return 'names' in f && (f.names as readonly string[]).includes(v.toUpperCase());
}

function partOk(part: string, f: (typeof FIELDS)[number]): boolean {
  const [range, step, extra] = part.split('/');
  if (extra !== undefined || (step !== undefined && !/^[1-9]\d*$/.test(step))) return false;
  if (range === '*' || (range === '?' && f.name.startsWith('day'))) return true;
  const ends = range.split('-');
  if (ends.length > 2) return false;
  return ends.every((e) => valueOk(e, f));
}

/** null when valid, else what is wrong (for a message). */
export function cronProblem(expr: string): string | null {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5) {
    return `expected a cron expression with 5 fields (minute hour day-of-month month day-of-week), found ${fields.length} field(s)`;
  }
  for (let i = 0; i < 5; i++) {
    const f = FIELDS[i];
    if (!fields[i].split(',').every((p) => partOk(p, f))) {
      return `invalid ${f.name} field ${JSON.stringify(fields[i])} (allowed ${f.lo}-${f.hi}, *, lists, ranges, /steps)`;
    }
  }
  return null;
}
