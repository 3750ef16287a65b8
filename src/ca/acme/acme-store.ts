/**
 * The storage the ACME lifecycle needs (accounts, EAB keys, orders, authorizations, challenges,
 * spent nonces), declared here by its consumer, `ca/acme/`; src/store implements it for SQLite and
 * PostgreSQL, in the same database as the CA's inventory.
 */
// The ACME lifecycle work (issue 16) fills this in.
export interface AcmeStore {
  /** Removes abandoned orders, authorizations and spent nonces whose expiry is before `now`. */
  expire(now: Date): Promise<void>;
}
