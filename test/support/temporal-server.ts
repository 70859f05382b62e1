/**
 * A real Temporal dev server for tests: free port, headless, SQLite file in a temp dir (so a test
 * can stop and restart it on the same state).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../lib/util/free-port';
import { type DevServer, findTemporalBinary, startDevServer } from '../../temporal/dev-server';

export { freePort };

export interface TestServer {
  address: string;
  dir: string;
  dbFile: string;
  /** Stops the server (SIGTERM) keeping its DB file. */
  stop(): Promise<void>;
  /** Starts it again on the same port and DB file. */
  restart(): Promise<void>;
  /** Stops it and deletes the temp dir. */
  dispose(): Promise<void>;
}

export async function startTestServer(): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'anomaly-temporal-'));
  const dbFile = join(dir, 'temporal.db');
  const port = await freePort();
  const binary = findTemporalBinary();
  const launch = (): Promise<DevServer> =>
    startDevServer({
      binary,
      port,
      uiPort: null,
      dbFile,
      logFile: join(dir, 'server.log'),
      startTimeoutMs: 60_000,
    });
  let server: DevServer | undefined = await launch();
  return {
    address: server.address,
    dir,
    dbFile,
    async stop() {
      await server?.stop();
      server = undefined;
    },
    async restart() {
      if (server) await server.stop();
      server = await launch();
    },
    async dispose() {
      await server?.stop();
      server = undefined;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
