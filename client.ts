/**
 * `npm run pipeline -- ...`: start, follow, inspect, resume and cancel pipeline runs, and manage
 * their schedules. Without TEMPORAL_ADDRESS everything runs locally (embedded dev server + worker
 * processes, see temporal/session.ts); with it, the given cluster and external `npm run worker`s.
 * Exit codes: 0 all categories completed, 1 some failed/cancelled (or an internal error),
 * 2 the user's to fix (bad flag, config, dataset, unknown run...), 130 interrupted.
 */
import { main } from './cli/pipeline/program';

process.exitCode = await main(process.argv.slice(2));
// Temporal's native connection can keep the event loop alive briefly; we are done.
process.exit(process.exitCode);
