/**
 * Cluster mode over mutual TLS, as with a production cluster or Temporal Cloud: the connection
 * settings come from the same environment variables as the `temporal` CLI (temporal/connection.ts).
 * The dev server has no TLS of its own, so a TLS-terminating proxy (Node's tls, ALPN h2, client
 * certificates required) stands in front of a REAL dev server. Both connection kinds are exercised:
 * the client's (grpc-js) and the worker's (the Rust core), each making a real call through the proxy.
 * Test certificates (test/fixtures/tls, valid until 2126): a CA, a server certificate for
 * `temporal.test` and a client certificate.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetFromEnv } from '../temporal/connection';
import { connectWorker } from '../temporal/worker-runtime';
import { startTestServer, type TestServer } from './support/temporal-server';

const FIXTURES = fileURLToPath(new URL('./fixtures/tls', import.meta.url));
const file = (name: string) => join(FIXTURES, name);

let server: TestServer;
let proxy: Server;
let proxyAddress: string;
const sockets = new Set<Socket>();

beforeAll(async () => {
  server = await startTestServer();
  const [host, port] = [
    server.address.slice(0, server.address.lastIndexOf(':')),
    Number(server.address.split(':').pop()),
  ];
  proxy = createServer(
    {
      key: readFileSync(file('server.key')),
      cert: readFileSync(file('server.pem')),
      ca: readFileSync(file('ca.pem')),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (tlsSocket) => {
      const upstream = connect(port, host);
      sockets.add(tlsSocket).add(upstream);
      tlsSocket.pipe(upstream).pipe(tlsSocket);
      const drop = () => {
        tlsSocket.destroy();
        upstream.destroy();
      };
      tlsSocket.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    },
  );
  proxy.on('tlsClientError', () => {}); // rejected handshakes are what the negative cases expect
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const addr = proxy.address();
  proxyAddress = `127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  await server?.dispose();
});

const mtlsEnv = (over: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  TEMPORAL_ADDRESS: proxyAddress,
  TEMPORAL_TLS_CA: file('ca.pem'),
  TEMPORAL_TLS_CERT: file('client.pem'),
  TEMPORAL_TLS_KEY: file('client.key'),
  TEMPORAL_TLS_SERVER_NAME: 'temporal.test',
  ...over,
});

describe('cluster mode over mutual TLS (TEMPORAL_TLS_* variables)', () => {
  it('the client and the worker connection both reach the server through TLS with client certificates', async () => {
    const target = targetFromEnv(mtlsEnv());
    expect(target?.tls).toBeDefined();
    const client = await Connection.connect({ address: target!.address, tls: target!.tls });
    try {
      const info = await client.workflowService.getSystemInfo({});
      expect(info.serverVersion).toMatch(/\d+\.\d+/);
      const ns = await client.workflowService.describeNamespace({ namespace: target!.namespace });
      expect(ns.namespaceInfo?.name).toBe('default');
    } finally {
      await client.close();
    }
    const worker = await connectWorker(target!);
    try {
      // The Rust core verified the server and presented the client certificate to connect at all.
      expect(worker).toBeInstanceOf(NativeConnection);
    } finally {
      await worker.close();
    }
  });

  it('fails without a client certificate, and with a server name the certificate does not carry', async () => {
    const noClientCert = targetFromEnv(mtlsEnv({ TEMPORAL_TLS_CERT: '', TEMPORAL_TLS_KEY: '' }));
    await expect(
      (async () => {
        const c = await Connection.connect({
          address: noClientCert!.address,
          tls: noClientCert!.tls,
          connectTimeout: 3000,
        });
        try {
          await c.workflowService.getSystemInfo({});
        } finally {
          await c.close();
        }
      })(),
    ).rejects.toThrow();
    const wrongName = targetFromEnv(mtlsEnv({ TEMPORAL_TLS_SERVER_NAME: 'elsewhere.test' }));
    await expect(connectWorker(wrongName!)).rejects.toThrow();
  });
});
