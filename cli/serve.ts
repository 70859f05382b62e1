/**
 * `npm run serve -- --models <package dir | runs dir | s3://bucket/prefix> [--port 8080 --host 127.0.0.1 --token T --max-body-mb 10 --engine tfjs|onnx]`
 * Serves the prediction API, the web page (/) and the loaded runs' reports (/reports/).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { type BackendPreference, selectBackend } from '../lib/model/backend';
import { createLogger } from '../lib/monitor/logger';
import { DEVICE_PREFERENCES, type DevicePreference } from '../lib/onnx/execution-provider';
import { INFERENCE_ENGINES, type InferenceEngine } from '../lib/serve/engine';
import { startServer } from '../lib/serve/start';
import { positiveInt } from '../lib/util/cli-args';
import { describeError, isUserError } from '../lib/util/errors';

const positive = (what: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`'${value}' is not a positive ${what}`);
  return n;
};
const port = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`'${value}' is not a port (0-65535)`);
  return n;
};

const program = new Command('serve')
  .description(
    'Serve trained models: REST API (/v1), web page (/), metrics (/metrics), OpenAPI (/openapi.json)',
  )
  .requiredOption(
    '--models <dir>',
    'a model package folder, or a runs folder (serves the newest run per category); or s3://bucket/prefix of either (fetched through the local cache, $ANOMALY_SPOTTER_CACHE_DIR)',
  )
  .option('--port <port>', 'port to listen on (0: any free port)', port, 8080)
  .option('--host <host>', 'interface to bind (0.0.0.0 to serve the network; set --token then)', '127.0.0.1')
  .option(
    '--token <token>',
    'require "Authorization: Bearer <token>" on /v1, /metrics, /reports (default: $ANOMALY_SPOTTER_TOKEN)',
  )
  .option('--max-body-mb <mb>', 'largest request body', positive('number of MB'), 10)
  .option('--max-pixels <n>', 'largest image (width*height) accepted', positive('pixel count'), 40_000_000)
  .option('--max-batch <n>', 'images per /v1/predict/batch request', positive('count'), 16)
  .option('--max-queue <n>', 'requests waiting per model before answering 503', positive('count'), 32)
  .addOption(
    new Option('--backend <name>', 'tfjs backend for inference')
      .choices(['auto', 'wasm', 'webgpu', 'tensorflow', 'cpu'])
      .default('auto'),
  )
  .addOption(
    new Option(
      '--engine <name>',
      'model forward pass: onnx (ONNX Runtime, on --device), tfjs (the --backend), or auto (onnx if it loads, else tfjs)',
    )
      .choices([...INFERENCE_ENGINES])
      .default('auto'),
  )
  .option('--engine-threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt)
  .addOption(
    new Option(
      '--device <name>',
      'ONNX Runtime execution provider for --engine onnx/auto: auto (cuda, then webgpu, else cpu; $ANOMALY_SPOTTER_DEVICE), cpu, cuda, webgpu',
    )
      .choices([...DEVICE_PREFERENCES])
      .default('auto'),
  )
  .parse();

const opts = program.opts<{
  models: string;
  port: number;
  host: string;
  token?: string;
  maxBodyMb: number;
  maxPixels: number;
  maxBatch: number;
  maxQueue: number;
  backend: BackendPreference;
  engine: InferenceEngine;
  device: DevicePreference;
  engineThreads?: number;
}>();

const log = createLogger({ service: 'serve' });

async function main(): Promise<void> {
  const backend = await selectBackend(opts.backend, 'infer');
  for (const note of backend.notes) log.info(`backend: ${note}`);
  const token = opts.token ?? process.env.ANOMALY_SPOTTER_TOKEN ?? null;
  const server = await startServer({
    models: opts.models,
    host: opts.host,
    port: opts.port,
    token,
    maxBodyMb: opts.maxBodyMb,
    maxPixels: opts.maxPixels,
    maxFiles: opts.maxBatch,
    maxQueue: opts.maxQueue,
    logger: log,
    engine: opts.engine,
    engineThreads: opts.engineThreads,
    device: opts.device,
  });
  for (const s of server.skipped) log.warn({ package: s.dir }, `skipped package: ${s.reason}`);
  for (const m of server.models) {
    log.info(
      { category: m.category, runId: m.pkg.metadata.runId, package: m.pkg.dir },
      `serving ${m.category}`,
    );
  }
  if (!token && opts.host !== '127.0.0.1' && opts.host !== 'localhost') {
    log.warn(`listening on ${opts.host} without a token: anyone who can reach it can use the API`);
  }
  if (server.engine.fallbackReason) {
    log.warn(`ONNX Runtime unavailable (${server.engine.fallbackReason}): inference runs on tfjs`);
  }
  if (server.engine.deviceFallback) log.warn(`execution provider: ${server.engine.deviceFallback}`);
  log.info(
    `engine ${server.engine.name}${server.engine.executionProvider ? ` (execution provider ${server.engine.executionProvider})` : ''}; backend ${backend.name} (${backend.reason}); open ${server.url}/ (API docs: ${server.url}/openapi.json)`,
  );
  const stop = async (signal: string) => {
    log.info(`${signal}: finishing in-flight requests`);
    await server.app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: unknown) => {
  if (isUserError(err)) process.stderr.write(`error: ${err.message}\n`);
  else process.stderr.write(`error: ${describeError(err)}\n`);
  process.exit(isUserError(err) ? 2 : 1);
});
