/**
 * The one place that decides which store a CA's state folder uses and opens it: every command,
 * `mutual serve`, the monitor and `mutual intermediate install` go through here, so none of them
 * can read the embedded SQLite file while the CA lives in PostgreSQL (issue 13, item 14).
 *
 * Where the inventory is, first match wins:
 * 1. `databaseUrl` / `databaseSchema` given by the caller (`mutual serve --database`);
 * 2. `MUTUAL_DATABASE_URL` / `MUTUAL_DATABASE_SCHEMA` in `env` (only when the caller passes an
 *    environment: the CLI does, a library caller decides for itself);
 * 3. `database.url` / `database.schema` in the state folder's config.yaml;
 * 4. the SQLite file `mutual.db` in the state folder.
 */
import fs from 'node:fs';
import type { CaStore } from './store.ts';
import { MutualError } from '../core/errors.ts';
import { openStore } from '../store/index.ts';
import { POSTGRES_URL, readConfig, SCHEMA_NAME } from './config.ts';
import { homeLayout } from './home.ts';

/** The environment variable naming a shared PostgreSQL inventory (it may hold a password). */
export const DATABASE_URL_ENV = 'MUTUAL_DATABASE_URL';
/** The environment variable naming its schema. */
export const DATABASE_SCHEMA_ENV = 'MUTUAL_DATABASE_SCHEMA';

/** Options of {@link openCaStore} and {@link resolveStoreLocation}. */
export interface OpenCaStoreOptions {
  /** The CA's state folder (its config.yaml and SQLite file). May be absent only with `databaseUrl`. */
  home?: string;
  /** `postgres://...`; overrides the environment and config.yaml. Default: none. */
  databaseUrl?: string;
  /** PostgreSQL schema; overrides the environment and config.yaml. Default: public. */
  databaseSchema?: string;
  /** Where {@link DATABASE_URL_ENV} and {@link DATABASE_SCHEMA_ENV} are read. Default: not read. */
  env?: NodeJS.ProcessEnv;
  /** SQLite: commit on a writer thread (servers). Default false. */
  writerThread?: boolean;
}

/** Where a CA's inventory is, and which setting said so. */
export type StoreLocation =
  | { kind: 'postgres'; url: string; schema: string; from: 'option' | 'environment' | 'config' }
  | { kind: 'sqlite'; path: string; from: 'default' };

/**
 * Decides where the inventory of the CA in `home` is (see the module comment for the order).
 *
 * @throws MutualError `CONFIG_INVALID` when a database URL is not `postgres://` or
 *   `postgresql://` (anything else would silently fall back to an empty SQLite file), or a schema
 *   is not a lowercase PostgreSQL identifier; as {@link readConfig} for a broken config.yaml.
 */
export function resolveStoreLocation(o: OpenCaStoreOptions): StoreLocation {
  const layout = o.home === undefined ? undefined : homeLayout(o.home);
  const config = layout && fs.existsSync(layout.config) ? readConfig(layout.config).database : undefined;
  // An empty variable counts as unset, as for MUTUAL_CA_PASSPHRASE.
  const env = (name: string) => o.env?.[name] || undefined;
  const pick = (
    [[o.databaseUrl, 'option'], [env(DATABASE_URL_ENV), 'environment'], [config?.url, 'config']] as const
  ).find(([url]) => url !== undefined);
  if (!pick) {
    if (!layout) throw new MutualError('CONFIG_INVALID', { detail: 'no database URL and no state folder: give one of them' });
    return { kind: 'sqlite', path: layout.database, from: 'default' };
  }
  const [url, from] = pick;
  if (!POSTGRES_URL.test(url!)) {
    const where = from === 'option' ? '--database' : from === 'environment' ? DATABASE_URL_ENV : 'config.yaml database.url';
    throw new MutualError('CONFIG_INVALID', { detail: `${where}: expected a postgres:// or postgresql:// URL (leave it unset for the SQLite file in the state folder)` });
  }
  const schema = o.databaseSchema ?? env(DATABASE_SCHEMA_ENV) ?? config?.schema ?? 'public';
  if (!SCHEMA_NAME.test(schema)) throw new MutualError('CONFIG_INVALID', { detail: `database schema ${JSON.stringify(schema.slice(0, 80))}: expected a lowercase PostgreSQL identifier` });
  return { kind: 'postgres', url: url!, schema, from };
}

/**
 * Opens the store of the CA in `home`, wherever {@link resolveStoreLocation} says it is.
 *
 * @throws as {@link resolveStoreLocation}; MutualError `STORE_UNAVAILABLE` when PostgreSQL cannot be
 *   reached or refuses the connection (the detail names host, database and schema, never a password).
 */
export async function openCaStore(o: OpenCaStoreOptions): Promise<CaStore> {
  const at = resolveStoreLocation(o);
  if (at.kind === 'sqlite') return openStore({ sqlitePath: at.path, writerThread: o.writerThread });
  try {
    return await openStore({ databaseUrl: at.url, schema: at.schema, sqlitePath: '' });
  } catch (cause) {
    const why = (cause as { code?: string; message?: string }).code ?? 'error';
    throw new MutualError('STORE_UNAVAILABLE', { detail: `${describeUrl(at.url)} schema ${at.schema} (from ${at.from}): ${why}: ${String((cause as Error).message).split('\n')[0]}` }, { cause });
  }
}

/** A database URL without its user info or parameters (which may hold a password). */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'the database URL';
  }
}
