/**
 * Picks the store from a database URL: PostgreSQL for `postgres://` / `postgresql://` (several
 * `mutual serve` replicas share it), else the embedded SQLite file in the state folder.
 */
import type { CaStore } from '../ca/store.ts';
import { openSqliteStore } from './sqlite-store.ts';

/** Opens the store named by `databaseUrl` (PostgreSQL), or the SQLite file at `sqlitePath`. */
export async function openStore(o: { databaseUrl?: string; sqlitePath: string; schema?: string; writerThread?: boolean }): Promise<CaStore> {
  if (o.databaseUrl && /^postgres(ql)?:\/\//.test(o.databaseUrl)) {
    const { openPostgresStore } = await import('./postgres-store.ts');
    return openPostgresStore({ connectionString: o.databaseUrl, schema: o.schema });
  }
  return openSqliteStore({ path: o.sqlitePath, writerThread: o.writerThread });
}
