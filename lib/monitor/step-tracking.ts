import { join } from 'node:path';
import type { StepContext } from '../steps/contracts';
import type { Logger } from './logger';
import type { RunTrackerOptions } from './tracker';

/**
 * The conventional tracker options for a pipeline step (the train step uses the same names):
 * event files in `<stepDir>/tensorboard`, one MLflow experiment per pipeline, one MLflow run per
 * pipeline run x category (its name is also the key a retried attempt uses to continue the run).
 */
export function trackerOptionsForStep(
  ctx: Pick<StepContext, 'pipeline' | 'runId' | 'category' | 'step' | 'stepDir'>,
  logger?: Logger,
): RunTrackerOptions {
  return {
    logDir: join(ctx.stepDir, 'tensorboard'),
    runName: `${ctx.pipeline}/${ctx.runId}/${ctx.category}`,
    experiment: ctx.pipeline,
    tags: { pipeline: ctx.pipeline, runId: ctx.runId, category: ctx.category, step: ctx.step },
    logger,
  };
}

type Flat = Record<string, string | number | boolean>;

/**
 * Nested config -> dotted keys (`optimizer.lr`), the shape MLflow params need. Arrays become
 * comma-joined strings (`model.widths` = "16,32,64,128"); null becomes "null".
 */
export function flattenParams(value: unknown, prefix = '', out: Flat = {}): Flat {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenParams(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = Array.isArray(value)
      ? value.map(String).join(',')
      : typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string'
        ? value
        : String(value);
  }
  return out;
}
