/**
 * The shared store: PostgreSQL through `pg`, for several `mutual serve` replicas on one database.
 * Implements the authority's CaStore with the SQLite store's semantics (same rows, same results);
 * what differs is concurrency:
 *
 * - The audit hash chain is shared by every replica. Each writing transaction takes one
 *   transaction-scoped advisory lock just before it appends, reads the chain head, appends with
 *   consecutive sequence numbers and commits, which releases the lock. Appends are therefore
 *   serialized and a sequence number becomes visible only after every smaller one (the lock is
 *   released after the commit is visible), which is what `revocationsSince` cursors rely on.
 * - Migrations run under a session advisory lock, so replicas starting together do not race.
 * - Scheduled jobs take a session advisory lock on a dedicated connection (`withJobLock`).
 *
 * Lock keys are (class, hashtext(schema ...)), so stores in different schemas of one database
 * (a test run per schema) do not block each other.
 */
import { Pool, type PoolClient } from 'pg';
import { AUDIT_GENESIS, auditHash } from '../core/audit-hash.ts';
import { dropExpired, encodeRevokedEntry, REVOCATION_REASONS } from '../core/crl.ts';
import { MutualError } from '../core/errors.ts';
import type { RevocationReason } from '../core/crl.ts';
import type {
  AuditEntry, AuditInput, CaStore, CertificateRecord, ListFilter, RenewalInput, RevocationEvent, RevocationInput, RevocationRecorded, StoredCertificate, TokenSpend,
} from '../ca/store.ts';
import { hold, LOCK_CLASS } from './postgres-connection.ts';
import { AcmePostgresStore } from './acme-postgres.ts';
import { migratePostgres } from './postgres-migrate.ts';
import { date, sec, serialBytes, toAuditEntry, toStored, type Row } from './rows.ts';
import { checkRenewalLimit, CRL_PACK_THRESHOLD } from './store-rules.ts';

/** Audit rows read per query by auditEntries(). */
const AUDIT_PAGE = 1000;

/** Default number of pooled connections (one is taken while a job lock is held). */
const DEFAULT_POOL_SIZE = 10;

/** Unquoted PostgreSQL identifier (no quoting needed anywhere, 63 bytes at most). */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Wraps a database failure (not a coded rejection such as CERT_NOT_FOUND) as STORE_FAILED. */
function storeFailed(e: unknown): MutualError {
  if (e instanceof MutualError) return e;
  return new MutualError('STORE_FAILED', { detail: (e as Error).message }, { cause: e });
}

// The certificates' DER goes as one binary bytea with offsets rather than as a bytea[]: array
// parameters travel as text, which doubles the bytes (hex) for the server to decode; this took a
// 256-certificate batch from 8.5 to 6.5 ms here.
const INSERT_CERTS = `
  INSERT INTO certificates (serial, issuer_kid, role, subject, identity, names, not_before, not_after, der, renewed_from, issued_at, issued_by)
  SELECT u.serial, u.issuer_kid, u.role, u.subject, u.identity, u.names, u.not_before, u.not_after,
         substring($9::bytea FROM u.der_offset + 1 FOR u.der_length), u.renewed_from, u.issued_at, u.issued_by
  FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
              $10::int[], $11::int[], $12::text[], $13::bigint[], $14::text[]) WITH ORDINALITY
    AS u(serial, issuer_kid, role, subject, identity, names, not_before, not_after, der_offset, der_length, renewed_from, issued_at, issued_by, ord)
  ORDER BY u.ord`; // identity ids in batch order: listings break expiry ties by insertion, as in SQLite

const INSERT_AUDIT = `
  INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash)
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])`;

/** Options for {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://user@host:5432/db` (see pg's connection strings). */
  connectionString: string;
  /** Schema holding the tables; created if missing. Lowercase letters, digits and `_`. Default `public`. */
  schema?: string;
  /** Pooled connections, at least 2 (a running job holds one). Default 10. */
  poolSize?: number;
  /** Loose CRL entries per issuer before they are packed into a chunk. Default {@link CRL_PACK_THRESHOLD}. */
  crlPackThreshold?: number;
}

/**
 * Opens the PostgreSQL store: connects, creates the schema if needed and applies the pending
 * POSTGRES_MIGRATIONS (see postgres-migrate.ts) under an advisory lock. Throws TypeError on bad options.
 */
export async function openPostgresStore(o: PostgresStoreOptions): Promise<PostgresStore> {
  const schema = o.schema ?? 'public';
  if (typeof o.connectionString !== 'string' || o.connectionString === '') throw new TypeError('connectionString is required');
  if (!SCHEMA_NAME.test(schema)) throw new TypeError(`schema must match ${SCHEMA_NAME} (got ${JSON.stringify(schema)})`);
  const poolSize = o.poolSize ?? DEFAULT_POOL_SIZE;
  if (!Number.isInteger(poolSize) || poolSize < 2) throw new TypeError('poolSize must be an integer of at least 2');
  const crlPackThreshold = o.crlPackThreshold ?? CRL_PACK_THRESHOLD;
  if (!Number.isInteger(crlPackThreshold) || crlPackThreshold < 1) throw new TypeError('crlPackThreshold must be a positive integer');
  const pool = new Pool({
    connectionString: o.connectionString,
    max: poolSize,
    // Set here rather than through the `options` startup parameter, which a connection string's own
    // `options` would silently replace. Runs once per new connection, before it is handed out.
    onConnect: (c) => c.query(`SET search_path TO ${schema}`),
  });
  // An idle connection that dies (server restart, network) is dropped by the pool; without a
  // listener the 'error' event would end the process. The next query reports the failure.
  pool.on('error', () => {});
  try {
    await migratePostgres(pool, schema);
    const { rows } = await pool.query('SELECT hashtext($1) AS k', [`${schema}/audit`]);
    return new PostgresStore(pool, schema, Number(rows[0].k), crlPackThreshold);
  } catch (e) {
    await pool.end();
    throw e;
  }
}

/** The PostgreSQL CaStore. Any number of instances (replicas) may share one schema. */
export class PostgresStore implements CaStore {
  /** The connection pool (tests and operational tooling). */
  readonly pool: Pool;
  readonly schema: string;
  readonly #auditLockKey: number;
  readonly #packThreshold: number;
  #closed = false;
  /** The ACME lifecycle's tables, written with this store's transactions and certificate insert (acme-postgres.ts). */
  readonly acme: AcmePostgresStore;

  /** Use {@link openPostgresStore}, which migrates first. */
  constructor(pool: Pool, schema: string, auditLockKey: number, crlPackThreshold: number) {
    this.pool = pool;
    this.schema = schema;
    this.#auditLockKey = auditLockKey;
    this.#packThreshold = crlPackThreshold;
    this.acme = new AcmePostgresStore(pool, { tx: (fn) => this.#tx(fn), insertIssued: (c, r) => this.#insertIssued(c, [r]) });
  }

  /** Runs `fn` in one transaction on one pooled connection; rolls back and rethrows on failure. */
  async #tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    const h = await hold(this.pool);
    try {
      await h.c.query('BEGIN');
      const out = await fn(h.c);
      await h.c.query('COMMIT');
      return out;
    } catch (e) {
      // A connection that cannot even roll back is destroyed rather than returned to the pool.
      await h.c.query('ROLLBACK').catch(h.fail);
      throw e;
    } finally {
      h.release();
    }
  }

  /**
   * Appends entries to the shared audit chain inside the caller's transaction. The advisory lock
   * is held until that transaction ends, so the head read here is the committed head of the chain.
   */
  async #appendAudit(c: PoolClient, entries: AuditInput[]): Promise<void> {
    await c.query({ name: 'mutual-audit-lock', text: 'SELECT pg_advisory_xact_lock($1, $2)', values: [LOCK_CLASS.audit, this.#auditLockKey] });
    // A statement of its own: its snapshot is taken after the lock was granted.
    const head = await c.query({ name: 'mutual-audit-head', text: 'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1' });
    let seq = head.rows.length ? Number(head.rows[0].seq) : 0;
    let prevHash = head.rows.length ? (head.rows[0].hash as string) : AUDIT_GENESIS;
    const n = entries.length;
    const cols = { seq: new Array<number>(n), at: new Array<number>(n), actor: new Array<string>(n), action: new Array<string>(n),
      target: new Array<string>(n), details: new Array<string>(n), prev: new Array<string>(n), hash: new Array<string>(n) };
    entries.forEach((e, i) => {
      const at = new Date(sec(e.at ?? new Date()) * 1000);
      const details = JSON.stringify(e.details);
      seq++;
      const hash = auditHash({ seq, at, actor: e.actor, action: e.action, target: e.target, details, prevHash });
      cols.seq[i] = seq;
      cols.at[i] = sec(at);
      cols.actor[i] = e.actor;
      cols.action[i] = e.action;
      cols.target[i] = e.target;
      cols.details[i] = details;
      cols.prev[i] = prevHash;
      cols.hash[i] = hash;
      prevHash = hash;
    });
    await c.query({ name: 'mutual-audit-insert', text: INSERT_AUDIT,
      values: [cols.seq, cols.at, cols.actor, cols.action, cols.target, cols.details, cols.prev, cols.hash] });
  }

  async recordIssued(records: CertificateRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      await this.#tx((c) => this.#insertIssued(c, records));
    } catch (e) {
      throw new MutualError('STORE_FAILED', { detail: (e as Error).message }, { cause: e });
    }
  }

  async recordEnrollment(record: CertificateRecord, token: TokenSpend): Promise<boolean> {
    try {
      return await this.#tx(async (c) => {
        if (!(await this.#spendToken(c, token))) return false;
        await this.#insertIssued(c, [record]);
        return true;
      });
    } catch (e) {
      throw storeFailed(e);
    }
  }

  /** Inserts certificates and their audit entries inside the caller's transaction. */
  async #insertIssued(c: PoolClient, records: CertificateRecord[]): Promise<void> {
    // One array per column: $1-$8 and $10-$14 of INSERT_CERTS; $9 is all the DER, concatenated.
    const cols = Array.from({ length: 13 }, () => new Array<unknown>(records.length));
    let offset = 0;
    records.forEach((r, i) => {
      const row = [serialBytes(r.serial), r.issuerKeyId, r.role, r.subject, r.identity ?? null, JSON.stringify(r.names), sec(r.notBefore), sec(r.notAfter),
        offset, r.der.length, r.renewedFrom ?? null, sec(r.issuedAt), r.issuedBy];
      row.forEach((x, k) => (cols[k][i] = x));
      offset += r.der.length;
    });
    const values = [...cols.slice(0, 8), Buffer.concat(records.map((r) => r.der)), ...cols.slice(8)];
    // The certificates go in before the audit lock is taken: a duplicate serial fails here
    // without holding up other replicas, and the lock is held only for the append and commit.
    await c.query({ name: 'mutual-insert-certs', text: INSERT_CERTS, values });
    await this.#appendAudit(c, records.map((r) => ({
      actor: r.issuedBy, action: 'issue', target: r.serial, at: r.issuedAt,
      details: { issuer: r.issuerKeyId, role: r.role, subject: r.subject, fingerprint: r.fingerprint, ...(r.renewedFrom ? { renewedFrom: r.renewedFrom } : {}) },
    })));
  }

  async recordRevocation(r: RevocationInput, actor: string): Promise<RevocationRecorded> {
    try {
      return await this.#tx(async (c) => {
        const found = await c.query('SELECT id, serial, lineage FROM certificates WHERE serial = $1 AND issuer_kid = $2', [serialBytes(r.serial), r.issuerKeyId]);
        if (!found.rows.length) throw new MutualError('CERT_NOT_FOUND', { serial: r.serial, detail: r.serial });
        // Renewals of this lineage wait until this commits, so none slips past the cascade below.
        await this.#lockLineage(c, found.rows[0]);
        const { rows } = await c.query('SELECT * FROM certificates WHERE id = $1 FOR UPDATE', [found.rows[0].id]);
        const row = rows[0] as Row;
        const already = row.status === 'revoked';
        if (already && !r.renewalsExpiringAfter) throw new MutualError('CERT_ALREADY_REVOKED', { serial: r.serial, detail: r.serial });
        const audit: AuditInput[] = [];
        const stored = already ? toStored(row) : await this.#revokeRow(c, row, r.revokedAt, r.reason, actor, {}, audit, r.crlEntry);
        const covered: StoredCertificate[] = [];
        if (r.renewalsExpiringAfter) {
          const d = await c.query(`
            WITH RECURSIVE d(id, serial) AS (
              SELECT id, serial FROM certificates WHERE id = $1
              UNION ALL
              SELECT c.id, c.serial FROM d JOIN certificates c ON c.renewed_from = encode(d.serial, 'hex')
            )
            SELECT c.* FROM d JOIN certificates c ON c.id = d.id WHERE c.id <> $1 AND c.status = 'valid' AND c.not_after > $2 ORDER BY c.id FOR UPDATE OF c`,
          [row.id, sec(r.renewalsExpiringAfter)]);
          for (const x of d.rows as Row[]) covered.push(await this.#revokeRow(c, x, r.revokedAt, r.reason, actor, { coveredBy: r.serial }, audit));
        }
        if (already && covered.length === 0) throw new MutualError('CERT_ALREADY_REVOKED', { serial: r.serial, detail: r.serial });
        await this.#appendAudit(c, audit);
        // After the append: under the audit lock, so concurrent revocations count and pack one at a time.
        for (const kid of new Set([stored, ...covered].map((x) => x.issuerKeyId))) await this.#packIfNeeded(c, kid);
        return { ...stored, covered };
      });
    } catch (e) {
      throw storeFailed(e);
    }
  }

  /**
   * Takes the transaction-scoped lock of a certificate's renewal lineage (its `lineage`, or its own
   * serial when it starts one): renewals and revocations of one lineage run one at a time, on
   * every replica. Taken before the audit lock, always.
   */
  async #lockLineage(c: PoolClient, row: Row): Promise<string> {
    const lineage = (row.lineage as string | null) ?? Buffer.from(row.serial as Uint8Array).toString('hex');
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_CLASS.lineage, `${this.schema}/${lineage}`]);
    return lineage;
  }

  /** Revokes one row inside the caller's transaction; its audit entry is added to `audit` (appended by the caller). */
  async #revokeRow(c: PoolClient, row: Row, at: Date, reason: RevocationReason, actor: string, extra: Record<string, string>, audit: AuditInput[], crlEntry?: Buffer): Promise<StoredCertificate> {
    const revokedAt = new Date(sec(at) * 1000);
    const serial = Buffer.from(row.serial as Uint8Array).toString('hex');
    const code = REVOCATION_REASONS[reason];
    await c.query('UPDATE certificates SET status = $1, revoked_at = $2, reason = $3 WHERE id = $4', ['revoked', sec(revokedAt), code, row.id]);
    await c.query('INSERT INTO crl_entries (issuer_kid, serial, not_after, entry) VALUES ($1, $2, $3, $4)',
      [row.issuer_kid, serial, row.not_after, crlEntry ?? encodeRevokedEntry(serialBytes(serial), revokedAt, reason)]);
    audit.push({ actor, action: 'revoke', target: serial, at: revokedAt, details: { issuer: row.issuer_kid, reason, ...extra } });
    return toStored({ ...row, status: 'revoked', revoked_at: sec(revokedAt), reason: code });
  }

  async recordRenewal(o: RenewalInput): Promise<{ superseded: StoredCertificate[] }> {
    const r = o.record;
    try {
      return await this.#tx(async (c) => {
        const found = await c.query('SELECT id, serial, lineage FROM certificates WHERE serial = $1', [serialBytes(r.renewedFrom)]);
        if (!found.rows.length) throw new MutualError('CERT_NOT_FOUND', { serial: r.renewedFrom, detail: r.renewedFrom });
        const lineage = await this.#lockLineage(c, found.rows[0]);
        // Read again under the lock: a revocation that covered it may have committed meanwhile.
        const parent = (await c.query('SELECT status FROM certificates WHERE id = $1', [found.rows[0].id])).rows[0] as Row;
        if (parent.status !== 'valid') throw new MutualError('CERT_REVOKED', { serial: r.renewedFrom, detail: `${r.renewedFrom} was revoked before its renewal was recorded` });
        const recent = (await c.query('SELECT issued_at AS t FROM certificates WHERE renewed_from = $1 AND issued_at > $2 ORDER BY issued_at DESC LIMIT $3',
          [r.renewedFrom, sec(r.issuedAt) - o.limit.windowSeconds, o.limit.max])).rows.map((x) => Number(x.t));
        checkRenewalLimit(r.renewedFrom, sec(r.issuedAt), recent, o.limit);
        await c.query(`INSERT INTO certificates (serial, issuer_kid, role, subject, identity, names, not_before, not_after, der, renewed_from, issued_at, issued_by, lineage)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [serialBytes(r.serial), r.issuerKeyId, r.role, r.subject, r.identity ?? null, JSON.stringify(r.names), sec(r.notBefore), sec(r.notAfter), r.der, r.renewedFrom, sec(r.issuedAt), r.issuedBy, lineage]);
        const audit: AuditInput[] = [{ actor: r.issuedBy, action: 'issue', target: r.serial, at: r.issuedAt,
          details: { issuer: r.issuerKeyId, role: r.role, subject: r.subject, fingerprint: r.fingerprint, renewedFrom: r.renewedFrom } }];
        const others = await c.query(`SELECT * FROM certificates WHERE (lineage = $1 OR serial = $2) AND status = 'valid' AND not_after > $3 AND serial <> ALL($4::bytea[]) ORDER BY id FOR UPDATE`,
          [lineage, serialBytes(lineage), sec(o.supersedeExpiringAfter), [serialBytes(r.renewedFrom), serialBytes(r.serial)]]);
        const superseded: StoredCertificate[] = [];
        for (const x of others.rows as Row[]) superseded.push(await this.#revokeRow(c, x, r.issuedAt, 'superseded', r.issuedBy, { supersededBy: r.serial }, audit));
        await this.#appendAudit(c, audit);
        for (const kid of new Set(superseded.map((x) => x.issuerKeyId))) await this.#packIfNeeded(c, kid);
        return { superseded };
      });
    } catch (e) {
      throw storeFailed(e);
    }
  }

  async #packIfNeeded(c: PoolClient, issuerKeyId: string): Promise<void> {
    const { rows } = await c.query('SELECT count(*) AS n FROM crl_entries WHERE issuer_kid = $1', [issuerKeyId]);
    if (Number(rows[0].n) >= this.#packThreshold) await this.#pack(c, issuerKeyId);
  }

  /** Moves the loose entries into one chunk; DELETE ... RETURNING packs exactly the rows it removes. */
  async #pack(c: PoolClient, issuerKeyId: string): Promise<void> {
    const { rows } = await c.query('DELETE FROM crl_entries WHERE issuer_kid = $1 RETURNING not_after, entry', [issuerKeyId]);
    if (rows.length === 0) return;
    rows.sort((a, b) => Number(a.not_after) - Number(b.not_after));
    const notAfter = new Uint32Array(rows.length);
    const parts: Buffer[] = [];
    rows.forEach((r, i) => {
      notAfter[i] = Number(r.not_after);
      parts.push(r.entry as Buffer);
    });
    await c.query('INSERT INTO crl_chunks (issuer_kid, min_not_after, max_not_after, count, entries, not_afters) VALUES ($1, $2, $3, $4, $5, $6)',
      [issuerKeyId, notAfter[0], notAfter[rows.length - 1], rows.length, Buffer.concat(parts), Buffer.from(notAfter.buffer)]);
  }

  /** Moves all loose CRL entries of an issuer into one chunk. */
  async packCrlEntries(issuerKeyId: string): Promise<void> {
    try {
      await this.#tx(async (c) => {
        // The same lock as revocations, so a pack never interleaves with one.
        await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS.audit, this.#auditLockKey]);
        await this.#pack(c, issuerKeyId);
      });
    } catch (e) {
      throw storeFailed(e);
    }
  }

  async getCertificate(serial: string, issuerKeyId?: string): Promise<StoredCertificate | undefined> {
    const s = serialBytes(serial.toLowerCase().replace(/^(00)+(?=.)/, ''));
    const { rows } = issuerKeyId
      ? await this.pool.query('SELECT * FROM certificates WHERE serial = $1 AND issuer_kid = $2', [s, issuerKeyId])
      : await this.pool.query('SELECT * FROM certificates WHERE serial = $1', [s]);
    return rows.length ? toStored(rows[0]) : undefined;
  }

  async listCertificates(f: ListFilter): Promise<StoredCertificate[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    const add = (sql: string, v: string | number) => (args.push(v), where.push(sql.replace('?', `$${args.length}`)));
    if (f.role) add('role = ?', f.role);
    if (f.status) add('status = ?', f.status);
    if (f.expiringBefore) add('not_after < ?', sec(f.expiringBefore));
    if (f.notExpiredAt) add('not_after >= ?', sec(f.notExpiredAt));
    if (f.identity) add('identity = ?', f.identity);
    args.push(f.limit ?? 1000);
    const sql = `SELECT * FROM certificates ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY not_after, id LIMIT $${args.length}`;
    return (await this.pool.query(sql, args)).rows.map(toStored);
  }

  async crlEntries(issuerKeyId: string, now: Date): Promise<Buffer[]> {
    const cut = sec(now);
    // One statement, hence one snapshot: a pack committing between two reads would otherwise
    // make its entries vanish from both the chunks and the loose rows.
    const { rows } = await this.pool.query({
      name: 'mutual-crl-entries',
      text: `SELECT min_not_after AS not_after, entries AS der, not_afters FROM crl_chunks WHERE issuer_kid = $1 AND max_not_after > $2
             UNION ALL
             SELECT not_after, entry, NULL FROM crl_entries WHERE issuer_kid = $1 AND not_after > $2`,
      values: [issuerKeyId, cut],
    });
    const out: Buffer[] = [];
    const loose: Buffer[] = [];
    for (const r of rows) {
      const der = r.der as Buffer;
      const na = r.not_afters as Buffer | null;
      if (na === null) loose.push(der);
      else if (Number(r.not_after) > cut) out.push(der);
      else out.push(dropExpired(der, new Uint32Array(na.buffer.slice(na.byteOffset, na.byteOffset + na.byteLength)), now));
    }
    if (loose.length) out.push(Buffer.concat(loose));
    return out;
  }

  async nextCrlNumber(issuerKeyId: string): Promise<bigint> {
    try {
      const { rows } = await this.pool.query(
        'INSERT INTO crl_numbers (issuer_kid, number) VALUES ($1, 1) ON CONFLICT (issuer_kid) DO UPDATE SET number = crl_numbers.number + 1 RETURNING number',
        [issuerKeyId],
      );
      return BigInt(rows[0].number);
    } catch (e) {
      throw storeFailed(e);
    }
  }

  async audit(entry: AuditInput): Promise<void> {
    try {
      await this.#tx((c) => this.#appendAudit(c, [entry]));
    } catch (e) {
      throw storeFailed(e);
    }
  }

  async consumeToken(jti: string, expiresAt: Date, actor: string): Promise<boolean> {
    try {
      return await this.#tx((c) => this.#spendToken(c, { jti, expiresAt, actor }));
    } catch (e) {
      throw storeFailed(e);
    }
  }

  /** Marks a token used inside the caller's transaction; false when it was used before. */
  async #spendToken(c: PoolClient, t: TokenSpend): Promise<boolean> {
    // Replicas forget old tokens concurrently: SKIP LOCKED leaves rows another one is
    // deleting, instead of waiting for it (or deadlocking with it).
    await c.query('DELETE FROM used_tokens WHERE jti IN (SELECT jti FROM used_tokens WHERE expires_at < $1 FOR UPDATE SKIP LOCKED)', [sec(new Date()) - 86_400]);
    // A concurrent insert of the same jti waits for the first transaction, then does nothing.
    const r = await c.query('INSERT INTO used_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING', [t.jti, sec(t.expiresAt)]);
    if (r.rowCount === 0) return false;
    await this.#appendAudit(c, [{ actor: t.actor, action: 'token-used', target: t.jti, details: {} }]);
    return true;
  }

  async revocationsSince(cursor: number, limit = 10_000): Promise<{ cursor: number; items: RevocationEvent[] }> {
    // The page and the head come from one statement (one snapshot): reading the head afterwards
    // could skip a revocation committed in between.
    const { rows } = await this.pool.query({
      name: 'mutual-revocations-since',
      text: `WITH h AS (SELECT coalesce(max(seq), 0) AS head FROM audit),
                  r AS (SELECT seq, at, target, details FROM audit WHERE action = 'revoke' AND seq > $1 ORDER BY seq LIMIT $2)
             SELECT h.head, r.* FROM h LEFT JOIN r ON true ORDER BY r.seq`,
      values: [cursor, limit],
    });
    const found = rows.filter((r) => r.seq !== null);
    const items = found.map((r) => {
      const d = JSON.parse(r.details as string) as { issuer: string; reason: RevocationReason };
      return { issuerKeyId: d.issuer, serial: r.target as string, revokedAt: date(r.at as string)!, reason: d.reason };
    });
    // With nothing new, the cursor still moves to the log's head so the next poll starts there.
    const next = found.length ? Number(found[found.length - 1].seq) : Math.max(cursor, Number(rows[0].head));
    return { cursor: next, items };
  }

  /**
   * Runs `fn` while holding a session advisory lock on a connection of its own; returns false at
   * once when another replica holds it. If that connection dies, the server releases the lock.
   */
  async withJobLock(name: string, fn: () => Promise<void>): Promise<boolean> {
    const h = await hold(this.pool);
    const key = [LOCK_CLASS.job, `${this.schema}/${name}`];
    try {
      let locked: boolean;
      try {
        locked = (await h.c.query('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', key)).rows[0].ok === true;
      } catch (e) {
        h.fail(e as Error);
        throw e;
      }
      if (!locked) return false;
      try {
        await fn();
      } finally {
        // A connection that cannot unlock is destroyed, which releases the lock too.
        await h.c.query('SELECT pg_advisory_unlock($1, hashtext($2))', key).catch(h.fail);
      }
      return true;
    } finally {
      h.release();
    }
  }

  async *auditEntries(): AsyncIterable<AuditEntry> {
    let after = 0;
    for (;;) {
      const { rows } = await this.pool.query({ name: 'mutual-audit-page', text: 'SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2', values: [after, AUDIT_PAGE] });
      for (const r of rows) yield toAuditEntry(r);
      if (rows.length < AUDIT_PAGE) return;
      after = Number(rows[rows.length - 1].seq);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pool.end();
  }
}
