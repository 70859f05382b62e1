import {
  type DestinationStream,
  destination,
  type Logger,
  type LoggerOptions,
  multistream,
  pino,
  stdSerializers,
  stdTimeFunctions,
} from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export interface CreateLoggerOptions {
  /** Extra JSON-lines destination (appended to, parent folders created), e.g. a per-attempt log in the run folder. */
  file?: string;
  /** Overrides LOG_LEVEL; default 'info'. */
  level?: string;
  /** Replaces stdout (tests capture lines here). The file destination, if any, is still written. */
  destination?: DestinationStream;
  /** Force (true) or forbid (false) pretty output; default: pretty when stdout is a TTY. */
  pretty?: boolean;
}

/** File destinations per logger, so that `closeLogger` can flush and release them. */
const fileStreams = new WeakMap<Logger, ReturnType<typeof destination>>();

/**
 * One JSON line per event on stdout (human-readable when stdout is a TTY) and optionally the
 * same JSON lines in `file`. `bindings` (runId, category, step, attempt...) go on every line.
 *
 * Errors logged under `err` or `error` carry their `cause` chain (message and stack of each level),
 * because our errors wrap lower-level ones (e.g. a UserError around a sharp decode error).
 */
export function createLogger(bindings: Record<string, unknown> = {}, opts: CreateLoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? 'info';
  const usePretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  // pino-pretty as an in-process stream (not a worker-thread transport): lines appear in order with
  // other stdout output and nothing is lost when the process exits abruptly.
  const console: DestinationStream =
    opts.destination ??
    (usePretty ? pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l' }) : destination(1));
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: stdTimeFunctions.isoTime,
    serializers: { err: stdSerializers.err, error: stdSerializers.err },
  };
  if (!opts.file) return pino(options, console);
  // Synchronous file writes: a per-attempt log must contain the last lines before a crash, and
  // training logs a few lines per epoch, so the syscall per line costs nothing measurable.
  const file = destination({ dest: opts.file, mkdir: true, sync: true, append: true });
  // multistream filters by each stream's level; 'trace' lets the logger's own level decide.
  const logger = pino(
    options,
    multistream([
      { level: 'trace', stream: console },
      { level: 'trace', stream: file },
    ]),
  );
  fileStreams.set(logger, file);
  return logger;
}

/** Flushes and closes the `file` destination of a logger made by createLogger (no-op otherwise). */
export function closeLogger(logger: Logger): void {
  const file = fileStreams.get(logger);
  if (!file) return;
  fileStreams.delete(logger);
  try {
    file.flushSync();
  } catch {
    /* already closed or nothing buffered */
  }
  file.end();
}
