/**
 * Store test fixtures: fabricated certificate records (no CA needed), the two backends behind one
 * harness, and PostgreSQL schemas made and dropped per test.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { CaStore, CertificateRecord, RevocationInput } from '../../src/ca/store.ts';
import { newSerial } from '../../src/core/certificate-template.ts';
import { encodeRevokedEntry, type RevocationReason } from '../../src/core/crl.ts';
import { readElement } from '../../src/core/der.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.ts';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres-store.ts';

/** The fixed clock of the store tests. */
export const NOW = new Date('2027-03-01T09:30:00Z');
export const HOUR = 3_600_000;
export const DAY = 86_400_000;
export const plus = (d: Date, ms: number): Date => new Date(d.getTime() + ms);

export const ISSUER = 'a1'.repeat(20);
export const OTHER_ISSUER = 'b2'.repeat(20);

/** The message a skipped PostgreSQL case shows. */
export const PG_SKIP = 'PostgreSQL not configured: set MUTUAL_TEST_PG=postgres://... to run';

/** A certificate record with a random 16-byte serial and a small DER-ish blob as its "certificate". */
export function record(o: Partial<CertificateRecord> = {}): CertificateRecord {
  const der = Buffer.concat([Buffer.from([0x30, 0x22, 0x04, 0x20]), crypto.randomBytes(32)]);
  const role = o.role ?? 'server';
  return {
    issuerKeyId: ISSUER,
    serial: newSerial().toString('hex'),
    role,
    subject: 'CN=svc.acme.internal',
    ...(role === 'client' ? { identity: 'spiffe://acme.internal/prod/svc' } : {}),
    names: role === 'client' ? { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/svc'] } : { dns: ['svc.acme.internal'], ip: ['10.0.0.1'], uri: [] },
    notBefore: plus(NOW, -5 * 60_000),
    notAfter: plus(NOW, 90 * DAY),
    fingerprint: crypto.createHash('sha256').update(der).digest('hex'),
    der,
    issuedAt: NOW,
    issuedBy: 'test',
    ...o,
  };
}

/** A revocation of `r` with its pre-encoded CRL entry. */
export function revocation(r: CertificateRecord, reason: RevocationReason = 'keyCompromise', revokedAt = plus(NOW, HOUR)): RevocationInput {
  // The entry is encoded at whole seconds (RFC 5280 wants them); `revokedAt` is passed on as given,
  // so a test can check that the store drops the milliseconds too.
  const entryTime = new Date(Math.floor(revokedAt.getTime() / 1000) * 1000);
  return { issuerKeyId: r.issuerKeyId, serial: r.serial, revokedAt, reason, crlEntry: encodeRevokedEntry(Buffer.from(r.serial, 'hex'), entryTime, reason) };
}

/** Splits concatenated DER elements (CRL entries) into hex strings, sorted. */
export function splitEntries(parts: Buffer[]): string[] {
  const out: string[] = [];
  for (const b of parts) {
    for (let p = 0; p < b.length;) {
      const e = readElement(b, p);
      out.push(b.subarray(p, e.end).toString('hex'));
      p = e.end;
    }
  }
  return out.sort();
}

/** Options the harness passes to both stores. */
export interface OpenOptions {
  crlPackThreshold?: number;
}

/** An open store under test, with raw SQL access for what the interface cannot do (tampering, counting). */
export interface Opened {
  store: CaStore;
  /** Runs SQL without parameters; returns the rows. */
  sql(text: string): Promise<Record<string, unknown>[]>;
  /** What another process needs to open the same database (see {@link openFromSpec}). */
  spec: StoreSpec;
  /** Opens another store on the same database (as after a restart); cleanup closes it. */
  reopen(): Promise<CaStore>;
  /** Closes the stores and removes their database (file or schema). */
  cleanup(): Promise<void>;
}

/** A database to open, as JSON for a child process. */
export type StoreSpec = { kind: 'sqlite'; path: string } | { kind: 'postgres'; connectionString: string; schema: string };

/** Opens a store from a {@link StoreSpec}. */
export async function openFromSpec(spec: StoreSpec): Promise<CaStore> {
  return spec.kind === 'sqlite' ? openSqliteStore({ path: spec.path }) : openPostgresStore({ connectionString: spec.connectionString, schema: spec.schema });
}

/** One backend. */
export interface Backend {
  name: string;
  /** Why its cases skip, if they do. */
  skip?: string;
  open(o?: OpenOptions): Promise<Opened>;
}

export const sqliteBackend: Backend = {
  name: 'sqlite',
  async open(o = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-store-'));
    const file = path.join(dir, 'ca.db');
    const store: SqliteStore = openSqliteStore({ path: file, ...o });
    const more: CaStore[] = [];
    return {
      store,
      spec: { kind: 'sqlite', path: file },
      async reopen() {
        const s = openSqliteStore({ path: file, ...o });
        more.push(s);
        return s;
      },
      async sql(text) {
        return store.db.prepare(text).all() as Record<string, unknown>[];
      },
      async cleanup() {
        for (const s of [store, ...more]) await s.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

/** The connection string of the PostgreSQL test server, if configured. */
export const PG_URL = process.env.MUTUAL_TEST_PG;

/** A fresh, random schema name. */
export const freshSchema = (): string => `mutual_test_${crypto.randomBytes(6).toString('hex')}`;

/** Drops a test schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

/** Opens a PostgreSQL store on `schema` (test server). */
export function openPg(schema: string, o: OpenOptions & { poolSize?: number } = {}): Promise<PostgresStore> {
  return openPostgresStore({ connectionString: PG_URL!, schema, ...o });
}

export const postgresBackend: Backend = {
  name: 'postgres',
  get skip() {
    return pgSkip();
  },
  async open(o = {}) {
    if (!PG_URL) throw new Error('MUTUAL_TEST_PG is not set and MUTUAL_INTEROP=require: set MUTUAL_TEST_PG=postgres://... to run');
    const schema = freshSchema();
    const store = await openPg(schema, o);
    const more: CaStore[] = [];
    return {
      store,
      spec: { kind: 'postgres', connectionString: PG_URL, schema },
      async reopen() {
        const s = await openPg(schema, o);
        more.push(s);
        return s;
      },
      async sql(text) {
        return (await store.pool.query(text)).rows;
      },
      async cleanup() {
        for (const s of [store, ...more]) await s.close();
        await dropSchema(schema);
      },
    };
  },
};

/**
 * The `describe` options for the PostgreSQL cases: skip with a message when MUTUAL_TEST_PG is
 * unset; under MUTUAL_INTEROP=require, undefined, so the cases run and fail on the missing server.
 */
export function pgSkip(): string | undefined {
  if (PG_URL || process.env.MUTUAL_INTEROP === 'require') return undefined;
  return PG_SKIP;
}
