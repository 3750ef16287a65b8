/**
 * The authority's composition root: opens the CA in a state folder on the store its config names
 * (`databaseUrl`, the environment given, config.yaml's `database`, else the SQLite file in the
 * state folder; see open-ca-store.ts). The CLI, `serve` and library users open a CA through this;
 * CertificateAuthority itself only receives a store.
 */
import { CertificateAuthority, type OpenAuthorityOptions } from './authority.ts';
import { openCaStore, type OpenCaStoreOptions } from './open-ca-store.ts';

/** Options of {@link openAuthority}: the authority's, with where its store is instead of the store. */
export type OpenAuthorityAtOptions = Omit<OpenAuthorityOptions, 'store'> & Pick<OpenCaStoreOptions, 'databaseUrl' | 'databaseSchema' | 'env' | 'writerThread'>;

/** Unlocks the CA's keys, then opens its store. Throws CA_NOT_INITIALIZED, KEY_*, STORE_UNAVAILABLE. */
export function openAuthority(o: OpenAuthorityAtOptions): Promise<CertificateAuthority> {
  const { databaseUrl, databaseSchema, env, writerThread, ...authority } = o;
  return CertificateAuthority.open({ ...authority, store: () => openCaStore({ home: o.home, databaseUrl, databaseSchema, env, writerThread }) });
}
