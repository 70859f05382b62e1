import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StepContext, StepResult } from '../lib/steps/contracts';
import { sha256File } from '../lib/util/atomic';

/**
 * For `resume`: the step's previous result, if `<stepDir>/result.json` exists, describes this very
 * step, and every artifact it lists still exists with the recorded sha256. Anything else (missing,
 * unparsable, edited or deleted artifacts) means "run the step again".
 */
export async function loadVerifiedResult(
  ctx: StepContext,
): Promise<{ result: StepResult } | { reason: string }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(ctx.stepDir, 'result.json'), 'utf8'));
  } catch (err) {
    return { reason: `no readable result.json (${(err as NodeJS.ErrnoException).code ?? 'parse error'})` };
  }
  if (!isStepResult(parsed)) return { reason: 'result.json is not a step result' };
  if (parsed.step !== ctx.step || parsed.category !== ctx.category) {
    return { reason: `result.json belongs to ${parsed.category}/${parsed.step}` };
  }
  for (const out of parsed.outputs) {
    let actual: string;
    try {
      actual = await sha256File(join(ctx.runDir, out.path));
    } catch {
      return { reason: `artifact ${out.path} is missing` };
    }
    if (actual !== out.sha256) return { reason: `artifact ${out.path} changed (sha256 mismatch)` };
  }
  return { result: parsed };
}

function isStepResult(v: unknown): v is StepResult {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<StepResult>;
  return (
    typeof r.step === 'string' &&
    typeof r.activity === 'string' &&
    typeof r.category === 'string' &&
    Array.isArray(r.outputs) &&
    r.outputs.every((o) => typeof o?.path === 'string' && typeof o?.sha256 === 'string')
  );
}
