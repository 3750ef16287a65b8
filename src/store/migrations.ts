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
      -- Serials are random (126 bits), so the serial index takes random inserts: it is kept small
      -- (a 16-byte BLOB, not hex text with the issuer id), which halved the insert cost here.
      -- Serials are unique across the whole CA, a stronger rule than per issuer.
      CREATE TABLE certificates (
        id INTEGER PRIMARY KEY,
        serial BLOB NOT NULL UNIQUE,
        issuer_kid TEXT NOT NULL,
        role TEXT NOT NULL,
        subject TEXT NOT NULL,
        identity TEXT,
        names TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        der BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
        revoked_at INTEGER,
        reason INTEGER,
        renewed_from TEXT,
        issued_at INTEGER NOT NULL,
        issued_by TEXT NOT NULL
      );
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
      CREATE TABLE used_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
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
      CREATE INDEX audit_action ON audit (action, seq);
    `,
  },
  {
    version: 2,
    sql: `
      -- Renewal lineages (DESIGN.md, "Renewal"): a renewal carries the serial (hex) of the first
      -- certificate of its lineage; a certificate that starts one (issued, enrolled) has NULL. A
      -- renewal and a revocation look up the valid certificates of one lineage (at most two, plus
      -- those of lineages older than this column) and the descendants of one certificate.
      ALTER TABLE certificates ADD COLUMN lineage TEXT;
      CREATE INDEX certificates_lineage ON certificates (lineage) WHERE lineage IS NOT NULL;
      CREATE INDEX certificates_renewed_from ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;
      -- Renewals made before this version: each takes the lineage of its oldest ancestor.
      WITH RECURSIVE l(id, root) AS (
        SELECT c.id, lower(hex(c.serial)) FROM certificates c WHERE c.renewed_from IS NULL
        UNION ALL
        SELECT c.id, l.root FROM l JOIN certificates p ON p.id = l.id JOIN certificates c ON c.renewed_from = lower(hex(p.serial))
      )
      UPDATE certificates SET lineage = (SELECT root FROM l WHERE l.id = certificates.id) WHERE renewed_from IS NOT NULL;
    `,
  },
  {
    version: 3,
    sql: `
      -- ACME (RFC 8555; ca/acme/acme-store.ts). Times are epoch seconds; lists and challenges are
      -- JSON text. A challenge's id is its authorization's id and an index, so it needs no table.
      CREATE TABLE acme_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
      CREATE TABLE acme_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
      CREATE INDEX acme_nonces_expires_at ON acme_nonces (expires_at);
      CREATE TABLE acme_accounts (
        id TEXT PRIMARY KEY,
        thumbprint TEXT NOT NULL UNIQUE,
        jwk TEXT NOT NULL,
        status TEXT NOT NULL,
        contact TEXT NOT NULL,
        tos_agreed INTEGER NOT NULL,
        eab_key_id TEXT,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE acme_eab_keys (
        key_id TEXT PRIMARY KEY,
        hmac_key BLOB NOT NULL,
        names TEXT NOT NULL,
        client_profile INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        account_id TEXT UNIQUE
      );
      CREATE TABLE acme_orders (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        status TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        identifiers TEXT NOT NULL,
        not_before INTEGER,
        not_after INTEGER,
        certificate_id TEXT,
        replaces TEXT,
        error TEXT,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);
      CREATE INDEX acme_orders_expires_at ON acme_orders (expires_at);
      CREATE TABLE acme_authorizations (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        wildcard INTEGER NOT NULL,
        status TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        challenges TEXT NOT NULL
      );
      CREATE INDEX acme_authorizations_identifier ON acme_authorizations (account_id, value);
      CREATE INDEX acme_authorizations_expires_at ON acme_authorizations (expires_at);
      CREATE TABLE acme_order_authorizations (
        order_id TEXT NOT NULL,
        authorization_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (order_id, authorization_id)
      );
      CREATE INDEX acme_order_authorizations_authz ON acme_order_authorizations (authorization_id);
    `,
  },
];

/**
 * PostgreSQL schema: the SQLite one in PostgreSQL types. Times are epoch seconds (`bigint`) as in
 * SQLite, so both stores round-trip the same values; `names` and audit `details` are `text`, not
 * `jsonb`, because the audit hash covers the stored text byte for byte.
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      -- Serials are unique across the whole CA (a stronger rule than per issuer) and kept as the
      -- 16 raw bytes. The identity key gives listings SQLite's insertion order among equal expiries.
      CREATE TABLE certificates (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        serial bytea NOT NULL UNIQUE,
        issuer_kid text NOT NULL,
        role text NOT NULL,
        subject text NOT NULL,
        identity text,
        names text NOT NULL,
        not_before bigint NOT NULL,
        not_after bigint NOT NULL,
        der bytea NOT NULL,
        status text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
        revoked_at bigint,
        reason smallint,
        renewed_from text,
        issued_at bigint NOT NULL,
        issued_by text NOT NULL
      );
      CREATE INDEX certificates_not_after ON certificates (not_after, id);
      CREATE INDEX certificates_identity ON certificates (identity) WHERE identity IS NOT NULL;
      CREATE TABLE crl_entries (
        issuer_kid text NOT NULL,
        serial text NOT NULL,
        not_after bigint NOT NULL,
        entry bytea NOT NULL,
        PRIMARY KEY (issuer_kid, serial)
      );
      CREATE TABLE crl_chunks (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        issuer_kid text NOT NULL,
        min_not_after bigint NOT NULL,
        max_not_after bigint NOT NULL,
        count integer NOT NULL,
        entries bytea NOT NULL,
        not_afters bytea NOT NULL
      );
      CREATE INDEX crl_chunks_issuer ON crl_chunks (issuer_kid, max_not_after);
      CREATE TABLE used_tokens (jti text PRIMARY KEY, expires_at bigint NOT NULL);
      CREATE INDEX used_tokens_expires_at ON used_tokens (expires_at);
      CREATE TABLE crl_numbers (issuer_kid text PRIMARY KEY, number bigint NOT NULL);
      CREATE TABLE audit (
        seq bigint PRIMARY KEY,
        at bigint NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        target text NOT NULL,
        details text NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL
      );
      CREATE INDEX audit_action ON audit (action, seq);
    `,
  },
  {
    version: 2,
    sql: `
      -- Renewal lineages: see SQLITE_MIGRATIONS version 2.
      ALTER TABLE certificates ADD COLUMN lineage text;
      CREATE INDEX certificates_lineage ON certificates (lineage) WHERE lineage IS NOT NULL;
      CREATE INDEX certificates_renewed_from ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;
      WITH RECURSIVE l(id, root) AS (
        SELECT c.id, encode(c.serial, 'hex') FROM certificates c WHERE c.renewed_from IS NULL
        UNION ALL
        SELECT c.id, l.root FROM l JOIN certificates p ON p.id = l.id JOIN certificates c ON c.renewed_from = encode(p.serial, 'hex')
      )
      UPDATE certificates SET lineage = l.root FROM l WHERE l.id = certificates.id AND certificates.renewed_from IS NOT NULL;
    `,
  },
  {
    version: 3,
    sql: `
      -- ACME: see SQLITE_MIGRATIONS version 3.
      CREATE TABLE acme_secrets (name text PRIMARY KEY, value bytea NOT NULL);
      CREATE TABLE acme_nonces (nonce text PRIMARY KEY, expires_at bigint NOT NULL);
      CREATE INDEX acme_nonces_expires_at ON acme_nonces (expires_at);
      CREATE TABLE acme_accounts (
        id text PRIMARY KEY,
        thumbprint text NOT NULL UNIQUE,
        jwk text NOT NULL,
        status text NOT NULL,
        contact text NOT NULL,
        tos_agreed boolean NOT NULL,
        eab_key_id text,
        created_at bigint NOT NULL
      );
      CREATE TABLE acme_eab_keys (
        key_id text PRIMARY KEY,
        hmac_key bytea NOT NULL,
        names text NOT NULL,
        client_profile boolean NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint,
        account_id text UNIQUE
      );
      CREATE TABLE acme_orders (
        id text PRIMARY KEY,
        account_id text NOT NULL,
        status text NOT NULL,
        expires_at bigint NOT NULL,
        identifiers text NOT NULL,
        not_before bigint,
        not_after bigint,
        certificate_id text,
        replaces text,
        error text,
        created_at bigint NOT NULL
      );
      CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);
      CREATE INDEX acme_orders_expires_at ON acme_orders (expires_at);
      CREATE TABLE acme_authorizations (
        id text PRIMARY KEY,
        account_id text NOT NULL,
        type text NOT NULL,
        value text NOT NULL,
        wildcard boolean NOT NULL,
        status text NOT NULL,
        expires_at bigint NOT NULL,
        challenges text NOT NULL
      );
      CREATE INDEX acme_authorizations_identifier ON acme_authorizations (account_id, value);
      CREATE INDEX acme_authorizations_expires_at ON acme_authorizations (expires_at);
      CREATE TABLE acme_order_authorizations (
        order_id text NOT NULL,
        authorization_id text NOT NULL,
        position integer NOT NULL,
        PRIMARY KEY (order_id, authorization_id)
      );
      CREATE INDEX acme_order_authorizations_authz ON acme_order_authorizations (authorization_id);
    `,
  },
];
