import { stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { sha256File, writeJsonAtomic } from '../util/atomic';
import type { ArtifactRef, JsonValue, StepContext, StepResult } from './contracts';

/** Describes a file a step wrote, for its result manifest (path relative to the run directory). */
export async function artifact(
  ctx: Pick<StepContext, 'runDir'>,
  name: string,
  absPath: string,
): Promise<ArtifactRef> {
  const st = await stat(absPath);
  return { name, path: relative(ctx.runDir, absPath), sha256: await sha256File(absPath), bytes: st.size };
}

/** Writes `<stepDir>/result.json` atomically (the step's commit point) and returns the result. */
export async function finishStep(
  ctx: StepContext,
  activity: StepResult['activity'],
  startedAt: Date,
  outputs: ArtifactRef[],
  summary: Record<string, JsonValue>,
): Promise<StepResult> {
  const result: StepResult = {
    step: ctx.step,
    activity,
    category: ctx.category,
    outputs,
    summary,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  };
  await writeJsonAtomic(join(ctx.stepDir, 'result.json'), result);
  return result;
}

/** Absolute path of an upstream artifact by activity and artifact name; throws naming what is missing. */
export function inputPath(ctx: StepContext, activity: StepResult['activity'], name: string): string {
  const res = ctx.inputs[activity];
  if (!res)
    throw new Error(`step '${ctx.step}' needs the output of a '${activity}' step, but none ran before it`);
  const ref = res.outputs.find((o) => o.name === name);
  if (!ref) throw new Error(`step '${ctx.step}': '${activity}' produced no artifact named '${name}'`);
  return join(ctx.runDir, ref.path);
}
