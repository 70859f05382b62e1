/**
 * Pipeline YAML (`pipelines/<name>.yaml`): a declarative DAG of steps, run once per category.
 *
 *   name: quick                          # [A-Za-z0-9_-]; names the run folder runs/<name>/<run-id>
 *   description: ...                     # optional
 *   dataset:
 *     root: null                         # MVTec-layout folder, relative to this file; null/absent: the
 *                                        # bundled synthetic demo dataset (data/demo, made on first use).
 *                                        # `--data-root` on the command line wins.
 *     categories: all                    # all (every folder with train/good) | [bottle, screw, ...]
 *   concurrency: 2                       # categories trained at once
 *   schedule:                            # optional; used by `schedule` commands
 *     cron: ["0 2 * * *"]                # one or more 5-field cron expressions
 *     overlap: skip                      # skip | buffer_one | buffer_all | cancel_other | terminate_other | allow_all
 *     catchup_window: 1h
 *   defaults:                            # for every step unless the step says otherwise
 *     queue: cpu                         # cpu | gpu | any other task queue name
 *     retry: { maximum_attempts: 3, initial_interval: 1s, backoff: 2, maximum_interval: 1m }
 *     start_to_close: 10m
 *     heartbeat: 30s
 *   training: { epochs: 3 }              # overrides of config/training.yaml (any of its keys)
 *   steps:
 *     - name: train                      # unique
 *       activity: train                  # one of STEP_ACTIVITIES
 *       needs: [preprocess]              # step names; a step starts when all of them finished
 *       resources: { gpu: 1 }            # gpu >= 1 routes to the gpu task queue unless `queue:` is set
 *       queue: gpu
 *       retry: { maximum_attempts: 5 }   # merged key by key over defaults.retry
 *       start_to_close: 6h
 *       heartbeat: 2m
 *       params: {}                       # free-form, validated by the step itself
 *       cache: true                      # reuse an earlier run's outputs when the inputs hash the same
 *
 * Durations: a positive number and a unit: ms, s, m, h, d (`500ms`, `30s`, `1.5h`).
 */
import { z } from 'zod';
import { CATEGORY_NAME_RE } from '../config/load';
import { STEP_ACTIVITIES } from '../steps/contracts';
import { jsonValueSchema as jsonValue } from '../util/json';
import { cronProblem } from './cron';
import { DURATION_HINT, parseDuration } from './duration';

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const NAME_HINT = 'expected a name of letters, digits, _ and - (starting with a letter or digit)';

const duration = z.custom<string>((v) => typeof v === 'string' && parseDuration(v) !== null, {
  message: DURATION_HINT,
});
const name = z.string().refine((s) => NAME_RE.test(s), { message: NAME_HINT });
const categoryName = z.string().refine((s) => CATEGORY_NAME_RE.test(s), {
  message: 'expected a category folder name (letters, digits, _ and -; no paths)',
});

const cronExpr = z.string().superRefine((s, ctx) => {
  const problem = cronProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const retrySchema = z
  .object({
    maximum_attempts: z.number().int().positive().optional(),
    initial_interval: duration.optional(),
    backoff: z.number().min(1).optional(),
    maximum_interval: duration.optional(),
  })
  .strict();

export const stepSchema = z
  .object({
    name,
    activity: z.enum(STEP_ACTIVITIES),
    needs: z.array(z.string()).default([]),
    queue: z.string().min(1).optional(),
    resources: z
      .object({ gpu: z.number().int().min(0).default(0) })
      .strict()
      .optional(),
    retry: retrySchema.optional(),
    start_to_close: duration.optional(),
    heartbeat: duration.optional(),
    params: z.record(z.string(), jsonValue).default({}),
    /** false: always run, never reuse an earlier run's outputs for unchanged inputs (step cache). */
    cache: z.boolean().default(true),
  })
  .strict();

export const OVERLAP_POLICIES = [
  'skip',
  'buffer_one',
  'buffer_all',
  'cancel_other',
  'terminate_other',
  'allow_all',
] as const;

export const pipelineSchema = z
  .object({
    name,
    description: z.string().optional(),
    dataset: z
      .object({
        root: z.string().min(1).nullable().optional(),
        categories: z.union([z.literal('all'), z.array(categoryName).min(1)]).default('all'),
      })
      .strict()
      .default({ categories: 'all' }),
    concurrency: z.number().int().positive().default(1),
    schedule: z
      .object({
        cron: z.union([cronExpr, z.array(cronExpr).min(1)]),
        overlap: z.enum(OVERLAP_POLICIES).default('skip'),
        catchup_window: duration.default('1h'),
      })
      .strict()
      .optional(),
    defaults: z
      .object({
        queue: z.string().min(1).optional(),
        retry: retrySchema.optional(),
        start_to_close: duration.optional(),
        heartbeat: duration.optional(),
      })
      .strict()
      .default({}),
    /** Validated by the config loader, which knows the training schema and names this file. */
    training: z.unknown().optional(),
    steps: z.array(stepSchema).min(1),
  })
  .strict();

export type PipelineSpec = z.infer<typeof pipelineSchema>;
export type StepSpec = z.infer<typeof stepSchema>;

/** Built-in step defaults, under `defaults:` of the pipeline and then each step's own keys. */
export const BUILTIN_STEP_DEFAULTS = {
  queue: 'cpu',
  retry: { maximum_attempts: 3, initial_interval: '1s', backoff: 2, maximum_interval: '1m' },
  start_to_close: '10m',
  heartbeat: '30s',
} as const;
