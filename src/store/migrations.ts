/**
 * Versioned schema migrations. A migration, once released, is never edited: add a new version.
 */

/** One migration step. */
export interface Migration {
  version: number;
  sql: string;
}

/** SQLite schema. */
export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE certificates (
        issuer_kid TEXT NOT NULL,
        serial TEXT NOT NULL,
        role TEXT NOT NULL,
        subject TEXT NOT NULL,
        identity TEXT,
        names TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        der BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
        revoked_at INTEGER,
        reason INTEGER,
        renewed_from TEXT,
        issued_at INTEGER NOT NULL,
        issued_by TEXT NOT NULL,
        PRIMARY KEY (issuer_kid, serial)
      );
      CREATE INDEX certificates_serial ON certificates (serial);
      CREATE INDEX certificates_not_after ON certificates (not_after);
      CREATE INDEX certificates_identity ON certificates (identity) WHERE identity IS NOT NULL;
      CREATE TABLE crl_entries (
        issuer_kid TEXT NOT NULL,
        serial TEXT NOT NULL,
        not_after INTEGER NOT NULL,
        entry BLOB NOT NULL,
        PRIMARY KEY (issuer_kid, serial)
      );
      CREATE TABLE crl_chunks (
        id INTEGER PRIMARY KEY,
        issuer_kid TEXT NOT NULL,
        min_not_after INTEGER NOT NULL,
        max_not_after INTEGER NOT NULL,
        count INTEGER NOT NULL,
        entries BLOB NOT NULL,
        not_afters BLOB NOT NULL
      );
      CREATE INDEX crl_chunks_issuer ON crl_chunks (issuer_kid, max_not_after);
      CREATE TABLE crl_numbers (issuer_kid TEXT PRIMARY KEY, number INTEGER NOT NULL);
      CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
    `,
  },
];
