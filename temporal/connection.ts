/**
 * Where the Temporal cluster is and how to authenticate, from the environment:
 *   TEMPORAL_ADDRESS        host:port (unset: the CLI starts an embedded dev server)
 *   TEMPORAL_NAMESPACE      default "default"
 *   TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY   client certificate + key files (mTLS)
 *   TEMPORAL_TLS_CA         server root CA file;  TEMPORAL_TLS=true   TLS without client certs
 *   TEMPORAL_TLS_SERVER_NAME  SNI override;      TEMPORAL_API_KEY   API key (Temporal Cloud); implies TLS
 * Same variable names as the `temporal` CLI, so one environment serves both.
 */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import { UserError } from '../lib/util/errors';

export interface TemporalTarget {
  address: string;
  namespace: string;
  tls?: TLSConfig;
  apiKey?: string;
}

export const DEFAULT_NAMESPACE = 'default';

/** The configured remote cluster, or undefined when TEMPORAL_ADDRESS is unset (embedded mode). */
export function targetFromEnv(env: NodeJS.ProcessEnv = process.env): TemporalTarget | undefined {
  const address = env.TEMPORAL_ADDRESS?.trim();
  if (!address) return undefined;
  return { address, namespace: env.TEMPORAL_NAMESPACE?.trim() || DEFAULT_NAMESPACE, ...tlsFromEnv(env) };
}

function tlsFromEnv(env: NodeJS.ProcessEnv): Pick<TemporalTarget, 'tls' | 'apiKey'> {
  const read = (name: string): Uint8Array | undefined => {
    const path = env[name]?.trim();
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new UserError(
        'INVALID_ARGUMENT',
        `${name}=${path}: cannot read the file (${(err as Error).message})`,
      );
    }
  };
  const crt = read('TEMPORAL_TLS_CERT');
  const key = read('TEMPORAL_TLS_KEY');
  if (Boolean(crt) !== Boolean(key)) {
    throw new UserError('INVALID_ARGUMENT', 'TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together');
  }
  const ca = read('TEMPORAL_TLS_CA');
  const apiKey = env.TEMPORAL_API_KEY?.trim() || undefined;
  const wantTls = Boolean(crt || ca || apiKey || env.TEMPORAL_TLS === 'true' || env.TEMPORAL_TLS === '1');
  if (!wantTls) return {};
  const tls: TLSConfig = {
    ...(crt && key ? { clientCertPair: { crt, key } } : {}),
    ...(ca ? { serverRootCACertificate: ca } : {}),
    ...(env.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME } : {}),
  };
  return { tls, apiKey };
}
