import type { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions';

/** temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD (@temporalio/proto is not a direct dependency). */
const INDEXED_VALUE_TYPE_KEYWORD = 2;

/**
 * Registers our Keyword search attributes on a cluster that lacks them (the embedded server gets
 * them from its command line). Workflows upsert them, and upserting an unregistered attribute
 * fails the workflow task, so the client calls this before starting runs on an external cluster.
 * Temporal Cloud refuses the operator API: there they must be added in the Cloud UI / tcld.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set([
    ...Object.keys(existing.customAttributes ?? {}),
    ...Object.keys(existing.systemAttributes ?? {}),
  ]);
  const missing = Object.values(SEARCH_ATTRIBUTES)
    .map((k) => k.name)
    .filter((name) => !known.has(name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((name) => [name, INDEXED_VALUE_TYPE_KEYWORD])),
  });
  return missing;
}
