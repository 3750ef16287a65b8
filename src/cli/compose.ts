/**
 * The CLI's composition root: how every command opens the CA and its inventory. The store is the
 * one the CA is configured with (`--database`, MUTUAL_DATABASE_URL, config.yaml's `database`, else
 * the SQLite file in the state folder), decided in one place: src/ca/open-ca-store.ts.
 */
import fs from 'node:fs';
import type { CertificateAuthority, OpenAuthorityAtOptions } from '../ca/index.ts';
import { openCaStore, resolveStoreLocation } from '../ca/open-ca-store.ts';
import type { CaStore } from '../ca/store.ts';

/** Where the CLI reads MUTUAL_DATABASE_URL / MUTUAL_DATABASE_SCHEMA: its own environment. */
const cliEnv = (): NodeJS.ProcessEnv => process.env;

/** Opens the CA in `home` on the store it is configured with (the caller closes it). */
export async function openAuthority(o: Omit<OpenAuthorityAtOptions, 'env'>): Promise<CertificateAuthority> {
  // Loaded here, not by openInventory's callers (list, inspect, audit verify), which need no keys.
  const ca = await import('../ca/index.ts');
  return ca.openAuthority({ ...o, env: cliEnv() });
}

/**
 * Opens the inventory of the CA in `home` without its keys (list, inspect, audit verify, doctor).
 * With `ifPresent`, an embedded SQLite file that does not exist yet gives `undefined` instead of a
 * new, empty inventory that would look healthy.
 */
export async function openInventory(home: string, o: { ifPresent?: boolean } = {}): Promise<CaStore | undefined> {
  const at = resolveStoreLocation({ home, env: cliEnv() });
  if (o.ifPresent && at.kind === 'sqlite' && !fs.existsSync(at.path)) return undefined;
  return openCaStore({ home, env: cliEnv() });
}
