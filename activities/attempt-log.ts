import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

export type AttemptLogLevel = 'info' | 'warn' | 'error';

/**
 * JSON-lines log of one activity attempt: `<stepDir>/logs/attempt-<n>.log`. Appended line by line
 * (not written atomically like artifacts) because it must survive a worker being killed mid-step:
 * every line is on disk as soon as it is written, and a torn last line only loses that line.
 */
export class AttemptLog {
  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private readonly base: Record<string, unknown>,
  ) {}

  static async open(stepDir: string, attempt: number, base: Record<string, unknown>): Promise<AttemptLog> {
    const dir = join(stepDir, 'logs');
    await mkdir(dir, { recursive: true });
    const path = join(dir, `attempt-${attempt}.log`);
    return new AttemptLog(await open(path, 'a'), path, {
      ...base,
      attempt,
      pid: process.pid,
      host: hostname(),
    });
  }

  async write(level: AttemptLogLevel, msg: string, fields: Record<string, unknown> = {}): Promise<void> {
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...this.base, ...fields });
    try {
      await this.fh.appendFile(`${line}\n`);
    } catch {
      // Logging must never fail the step it describes.
    }
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}
