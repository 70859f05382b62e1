import { z } from 'zod';
import type { JsonValue } from '../steps/contracts';

/** zod schema of any JSON value (for free-form YAML params and package metadata). */
export const jsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([
    z.string(),
    z.number(),
    z.boolean(),
    z.null(),
    z.array(jsonValueSchema),
    z.record(z.string(), jsonValueSchema),
  ]),
);
