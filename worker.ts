/**
 * `npm run worker -- [--gpus 0,1] [--train-slots N] [--no-cpu-worker] [--cpu-slots N]`
 * Temporal workers for this host (TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TLS from the environment;
 * default 127.0.0.1:7233). See temporal/worker-runtime.ts for the process layout.
 */
import { fileURLToPath } from 'node:url';
import { STEPS, summaryStep } from './lib/registry';
import { describeError, isUserError } from './lib/util/errors';
import { runWorkerCli } from './temporal/worker-runtime';

try {
  await runWorkerCli(
    process.argv.slice(2),
    { steps: STEPS, summary: summaryStep },
    fileURLToPath(import.meta.url),
  );
  process.exit(0);
} catch (err) {
  process.stderr.write(`error: ${isUserError(err) ? err.message : describeError(err)}\n`);
  process.exit(isUserError(err) ? 2 : 1);
}
