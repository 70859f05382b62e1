/**
 * A real Temporal dev server and the real worker runtime in this process (a cpu worker with the
 * workflows, a train worker), for tests that run pipelines with given steps: start once per file,
 * `close()` in afterAll.
 */
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, type Worker } from '@temporalio/worker';
import { createRoleWorker, WORKFLOWS_PATH, type WorkerRegistry } from '../../temporal/worker-runtime';
import { startTestServer } from './temporal-server';

export interface InProcessWorkers {
  client: Client;
  close(): Promise<void>;
}

export async function startInProcessWorkers(
  registry: WorkerRegistry,
  opts: { cpuSlots?: number } = {},
): Promise<InProcessWorkers> {
  const [server, bundle] = await Promise.all([
    startTestServer(),
    bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') }),
  ]);
  const workerConnection = await NativeConnection.connect({ address: server.address });
  const workers: Worker[] = await Promise.all([
    createRoleWorker(workerConnection, 'default', registry, {
      role: 'cpu',
      workflowBundle: bundle,
      ...(opts.cpuSlots ? { cpuSlots: opts.cpuSlots } : {}),
    }),
    createRoleWorker(workerConnection, 'default', registry, { role: 'train' }),
  ]);
  const running = workers.map((w) => w.run());
  const clientConnection = await Connection.connect({ address: server.address });
  return {
    client: new Client({ connection: clientConnection }),
    async close() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await Promise.allSettled(running);
      await clientConnection.close();
      await workerConnection.close();
      await server.dispose();
    },
  };
}
