/**
 * Small but real step functions for orchestration tests: they write files under the run dir,
 * sleep (abortably), fail on demand, throw UserError, heartbeat and resume from checkpoints.
 * Behaviour comes from the step's `params` so it also works in separate worker processes:
 *   sleepMs          sleep before finishing
 *   failTimes        throw a plain (retryable) Error on attempts 1..failTimes
 *   failIfExists     throw a retryable Error while this file exists
 *   userError        throw UserError with this code
 *   onlyCategories   apply the failure params only to these categories
 *   epochs, epochMs  train-like: per-epoch checkpoint files + heartbeats, resume on retry
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { StepRegistry } from '../../activities';
import type { CategoryOutcome, SummaryResult } from '../../lib/pipeline/outcome';
import type {
  JsonValue,
  StepActivity,
  StepContext,
  StepFunction,
  StepHooks,
  StepResult,
} from '../../lib/steps/contracts';
import { STEP_ACTIVITIES } from '../../lib/steps/contracts';
import { artifact, finishStep } from '../../lib/steps/result';
import { writeJsonAtomic } from '../../lib/util/atomic';
import { UserError, type UserErrorCode } from '../../lib/util/errors';

function num(v: JsonValue | undefined, fallback: number): number {
  return typeof v === 'number' ? v : fallback;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function newestCheckpointEpoch(dir: string): Promise<number> {
  try {
    const epochs = (await readdir(dir))
      .map((f) => /^epoch-(\d+)\.json$/.exec(f)?.[1])
      .filter(Boolean)
      .map(Number);
    return epochs.length ? Math.max(...epochs) : 0;
  } catch {
    return 0;
  }
}

export async function testStep(
  activity: StepActivity,
  ctx: StepContext,
  hooks: StepHooks,
): Promise<StepResult> {
  const startedAt = new Date();
  const p = ctx.params;
  const applies =
    !Array.isArray(p.onlyCategories) || (p.onlyCategories as JsonValue[]).includes(ctx.category);
  await mkdir(ctx.stepDir, { recursive: true });
  const summary: Record<string, JsonValue> = { attempt: hooks.attempt, pid: process.pid };

  if (applies && typeof p.userError === 'string') {
    throw new UserError(p.userError as UserErrorCode, `test step '${ctx.step}' rejects ${ctx.category}`);
  }
  if (applies && hooks.attempt <= num(p.failTimes, 0)) {
    throw new Error(`transient failure on attempt ${hooks.attempt}`);
  }
  if (applies && typeof p.failIfExists === 'string' && existsSync(p.failIfExists)) {
    throw new Error(`marker ${p.failIfExists} exists`);
  }

  const epochs = num(p.epochs, 0);
  if (epochs > 0) {
    const ckptDir = join(ctx.stepDir, 'checkpoints');
    const resumeFrom = Math.max(hooks.previousProgress?.epoch ?? 0, await newestCheckpointEpoch(ckptDir));
    summary.resumedFromEpoch = resumeFrom;
    for (let epoch = resumeFrom + 1; epoch <= epochs; epoch++) {
      await abortableSleep(num(p.epochMs, 200), hooks.signal);
      const ckpt = join(ckptDir, `epoch-${epoch}.json`);
      await writeJsonAtomic(ckpt, { epoch, pid: process.pid });
      await appendFile(
        join(ctx.stepDir, 'epochs.jsonl'),
        `${JSON.stringify({ epoch, pid: process.pid, attempt: hooks.attempt })}\n`,
      );
      hooks.progress({
        stage: 'train',
        epoch,
        totalEpochs: epochs,
        loss: 1 / epoch,
        checkpoint: ckpt.slice(ctx.runDir.length + 1),
      });
    }
  }
  const sleepMs = num(p.sleepMs, 0);
  if (sleepMs > 0) {
    hooks.progress({ stage: ctx.step, message: 'sleeping' });
    await abortableSleep(sleepMs, hooks.signal);
  }

  const out = join(ctx.stepDir, 'out.json');
  await writeJsonAtomic(out, {
    step: ctx.step,
    category: ctx.category,
    inputs: Object.keys(ctx.inputs),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  });
  return finishStep(ctx, activity, startedAt, [await artifact(ctx, 'out', out)], summary);
}

export const TEST_STEPS: StepRegistry = Object.fromEntries(
  STEP_ACTIVITIES.map((a): [StepActivity, StepFunction] => [a, (ctx, hooks) => testStep(a, ctx, hooks)]),
) as StepRegistry;

export async function testSummary(runDir: string, outcomes: CategoryOutcome[]): Promise<SummaryResult> {
  const path = join(runDir, 'summary.json');
  await writeJsonAtomic(path, {
    categories: outcomes.map((o) => ({ category: o.category, status: o.status })),
  });
  return {
    outputs: [],
    summary: { categories: outcomes.length, failed: outcomes.filter((o) => o.status !== 'completed').length },
  };
}
