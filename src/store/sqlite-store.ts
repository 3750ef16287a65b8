/**
 * The embedded store's queries: SQLite through node:sqlite, in WAL mode. Implements the authority's
 * CaStore on a {@link SqliteEngine} (sqlite-engine.ts), which owns the connection, its
 * transactions and when their writes are on disk: every write here runs in
 * {@link SqliteEngine.transaction} and answers once {@link SqliteEngine.durable} resolves.
 *
 * CRL entries are kept pre-encoded: each revocation stores its DER entry; once an issuer has
 * {@link CRL_PACK_THRESHOLD} loose entries they are packed into one chunk blob (with a parallel
 * array of expiry times), so building a CRL reads a few blobs, not one row per revoked certificate.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { AUDIT_GENESIS, auditHash } from '../core/audit-hash.ts';
import { dropExpired, encodeRevokedEntry, REVOCATION_REASONS } from '../core/crl.ts';
import { MutualError } from '../core/errors.ts';
import type {
  AuditEntry, AuditInput, CaStore, CertificateRecord, ListFilter, RenewalInput, RevocationEvent, RevocationInput, RevocationRecorded, StoredCertificate, TokenSpend,
} from '../ca/store.ts';
import type { RevocationReason } from '../core/crl.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { date, sec, serialBytes, toAuditEntry, toStored, type Row } from './rows.ts';
import { SqliteEngine, type CheckpointStats, type SqliteEngineOptions } from './sqlite-engine.ts';
import { checkRenewalLimit, CRL_PACK_THRESHOLD } from './store-rules.ts';
import { AcmeSqliteStore } from './acme-sqlite.ts';

// The type checkpointStats() returns, and the threshold the CRL tests and bench pack by.
export type { CheckpointStats } from './sqlite-engine.ts';
export { CRL_PACK_THRESHOLD } from './store-rules.ts';

/** Options for {@link openSqliteStore} and {@link SqliteStore}: the engine's, and the CRL packing. */
export interface SqliteStoreOptions extends SqliteEngineOptions {
  /** Loose CRL entries per issuer before they are packed into a chunk. Default {@link CRL_PACK_THRESHOLD}. */
  crlPackThreshold?: number;
}

/** Opens (and migrates) the SQLite store. */
export function openSqliteStore(o: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(o);
}

/**
 * The SQLite CaStore. Several processes may share the file (WAL); each write transaction re-reads
 * the audit head. Throws TypeError on bad options.
 */
export class SqliteStore implements CaStore {
  /** The connection (tests and operational tooling). */
  readonly db: DatabaseSync;
  readonly #engine: SqliteEngine;
  /** The ACME lifecycle's tables, written in this store's transactions (acme-sqlite.ts). */
  readonly acme: AcmeSqliteStore;
  #insertCert: StatementSync;
  #insertAudit: StatementSync;
  #lastHash = AUDIT_GENESIS;
  #seq = 0;
  readonly #packThreshold: number;
  /** Reads the audit head again: after BEGIN and after a rollback (see SqliteEngine.transaction). */
  readonly #reread = (): void => this.#readHead();

  constructor(o: SqliteStoreOptions) {
    const crlPackThreshold = o.crlPackThreshold ?? CRL_PACK_THRESHOLD;
    if (!Number.isInteger(crlPackThreshold) || crlPackThreshold < 1) throw new TypeError('crlPackThreshold must be a positive integer');
    this.#packThreshold = crlPackThreshold;
    this.#engine = new SqliteEngine(o);
    this.db = this.#engine.db;
    migrate(this.db);
    this.#insertCert = this.db.prepare(
      `INSERT INTO certificates (serial, issuer_kid, role, subject, identity, names, not_before, not_after, der, renewed_from, issued_at, issued_by)
       VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
    );
    this.#insertAudit = this.db.prepare('INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)');
    this.#head = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    // Prepared once: a prepare costs ~10x the indexed read itself (measured ~90 us vs ~9 us), and
    // this read runs per renewal and per admin request of `mutual serve`.
    this.#certBySerialAndIssuer = this.db.prepare('SELECT * FROM certificates WHERE serial = ? AND issuer_kid = ?');
    this.#certBySerial = this.db.prepare('SELECT * FROM certificates WHERE serial = ?');
    this.#readHead();
    this.acme = new AcmeSqliteStore(this.db, {
      write: async (fn, records = 0) => {
        if (this.#engine.holding) await this.#engine.unheld();
        const out = this.#tx(fn, records);
        await this.#engine.durable();
        return out;
      },
      insertIssued: (r) => this.#insertIssued(r),
    });
  }

  #certBySerialAndIssuer: StatementSync;
  #certBySerial: StatementSync;

  #head: StatementSync;

  #readHead(): void {
    const last = this.#head.get() as Row | undefined;
    this.#seq = last ? Number(last.seq) : 0;
    this.#lastHash = last ? (last.hash as string) : AUDIT_GENESIS;
  }

  /** One write transaction (see SqliteEngine.transaction), with the audit head read inside it. */
  #tx<T>(fn: () => T, records = 0): T {
    return this.#engine.transaction(fn, { records, reread: this.#reread });
  }

  /** Checkpoint state, for diagnosis and tests (a fallback to inline checkpoints is safe, and is said here). */
  checkpointStats(): Readonly<CheckpointStats> {
    return this.#engine.checkpointStats();
  }

  #appendAudit(e: AuditInput): void {
    const at = new Date(Math.floor((e.at ?? new Date()).getTime() / 1000) * 1000);
    const seq = this.#seq + 1;
    const details = JSON.stringify(e.details);
    const hash = auditHash({ seq, at, actor: e.actor, action: e.action, target: e.target, details, prevHash: this.#lastHash });
    this.#insertAudit.run(seq, sec(at), e.actor, e.action, e.target, details, this.#lastHash, hash);
    this.#seq = seq;
    this.#lastHash = hash;
  }

  async recordIssued(records: CertificateRecord[]): Promise<void> {
    if (this.#engine.writerThread) return this.#engine.commitOnWriter(records);
    if (this.#engine.holding) await this.#engine.unheld();
    this.recordIssuedSync(records);
    await this.#engine.durable();
  }

  /**
   * Commits issued certificates on the calling thread. With `fsync: 'thread-pool'` they are not
   * yet durable when it returns: use {@link recordIssued}, which waits for that.
   */
  recordIssuedSync(records: CertificateRecord[]): void {
    try {
      this.#tx(() => {
        for (const r of records) this.#insertIssued(r);
      }, records.length);
    } catch (e) {
      throw new MutualError('STORE_FAILED', { detail: (e as Error).message }, { cause: e });
    }
  }

  async recordEnrollment(record: CertificateRecord, token: TokenSpend): Promise<boolean> {
    if (this.#engine.holding) await this.#engine.unheld();
    const fresh = this.#tx(() => {
      if (!this.#spendToken(token)) return false;
      this.#insertIssued(record);
      return true;
    }, 1);
    // Returned once on disk: a crash cannot lose the certificate nor let the token be replayed.
    if (fresh) await this.#engine.durable();
    return fresh;
  }

  /** Inserts one certificate and its audit entry (inside the caller's transaction). */
  #insertIssued(r: CertificateRecord): void {
    this.#insertCert.run(serialBytes(r.serial), r.issuerKeyId, r.role, r.subject, r.identity ?? null, JSON.stringify(r.names), sec(r.notBefore), sec(r.notAfter),
      r.der, r.renewedFrom ?? null, sec(r.issuedAt), r.issuedBy);
    this.#appendAudit({ actor: r.issuedBy, action: 'issue', target: r.serial, at: r.issuedAt,
      details: { issuer: r.issuerKeyId, role: r.role, subject: r.subject, fingerprint: r.fingerprint, ...(r.renewedFrom ? { renewedFrom: r.renewedFrom } : {}) } });
  }

  /** Marks a token used (inside the caller's transaction); false when it was used before. */
  #spendToken(t: TokenSpend): boolean {
    this.db.prepare('DELETE FROM used_tokens WHERE expires_at < ?').run(sec(new Date()) - 86_400);
    const r = this.db.prepare('INSERT INTO used_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING').run(t.jti, sec(t.expiresAt));
    if (r.changes === 0) return false;
    this.#appendAudit({ actor: t.actor, action: 'token-used', target: t.jti, details: {} });
    return true;
  }

  async recordRevocation(r: RevocationInput, actor: string): Promise<RevocationRecorded> {
    if (this.#engine.holding) await this.#engine.unheld();
    const recorded = this.#tx(() => {
      const row = this.db.prepare('SELECT * FROM certificates WHERE serial = ? AND issuer_kid = ?').get(serialBytes(r.serial), r.issuerKeyId) as Row | undefined;
      if (!row) throw new MutualError('CERT_NOT_FOUND', { serial: r.serial, detail: r.serial });
      const already = row.status === 'revoked';
      if (already && !r.renewalsExpiringAfter) throw new MutualError('CERT_ALREADY_REVOKED', { serial: r.serial, detail: r.serial });
      const stored = already ? toStored(row) : this.#revokeRow(row, r.revokedAt, r.reason, actor, {}, r.crlEntry);
      const covered = r.renewalsExpiringAfter
        ? this.#validDescendants(row, r.renewalsExpiringAfter).map((d) => this.#revokeRow(d, r.revokedAt, r.reason, actor, { coveredBy: r.serial }))
        : [];
      if (already && covered.length === 0) throw new MutualError('CERT_ALREADY_REVOKED', { serial: r.serial, detail: r.serial });
      for (const kid of new Set([stored, ...covered].map((c) => c.issuerKeyId))) this.#packIfNeeded(kid);
      return { ...stored, covered };
    });
    await this.#engine.durable();
    return recorded;
  }

  /**
   * Revokes one certificate row inside the caller's transaction: status, CRL entry (encoded here
   * unless given) and audit entry (action `revoke`, which replicas follow).
   */
  #revokeRow(row: Row, at: Date, reason: RevocationReason, actor: string, extra: Record<string, string>, crlEntry?: Buffer): StoredCertificate {
    const revokedAt = new Date(sec(at) * 1000);
    const serial = Buffer.from(row.serial as Uint8Array).toString('hex');
    this.db.prepare('UPDATE certificates SET status = ?, revoked_at = ?, reason = ? WHERE id = ?').run('revoked', sec(revokedAt), REVOCATION_REASONS[reason], row.id as number);
    this.db.prepare('INSERT INTO crl_entries (issuer_kid, serial, not_after, entry) VALUES (?,?,?,?)')
      .run(row.issuer_kid as string, serial, row.not_after as number, crlEntry ?? encodeRevokedEntry(serialBytes(serial), revokedAt, reason));
    this.#appendAudit({ actor, action: 'revoke', target: serial, at: revokedAt, details: { issuer: row.issuer_kid, reason, ...extra } });
    return toStored({ ...row, status: 'revoked', revoked_at: sec(revokedAt), reason: REVOCATION_REASONS[reason] });
  }

  /** The valid certificates renewed from `row`, directly or not, expiring after `after`, oldest first. */
  #validDescendants(row: Row, after: Date): Row[] {
    return this.db.prepare(`
      WITH RECURSIVE d(id, serial) AS (
        SELECT id, serial FROM certificates WHERE id = ?
        UNION ALL
        SELECT c.id, c.serial FROM d JOIN certificates c ON c.renewed_from = lower(hex(d.serial))
      )
      SELECT c.* FROM d JOIN certificates c ON c.id = d.id WHERE c.id <> ? AND c.status = 'valid' AND c.not_after > ? ORDER BY c.id`)
      .all(row.id as number, row.id as number, sec(after)) as Row[];
  }

  async recordRenewal(o: RenewalInput): Promise<{ superseded: StoredCertificate[] }> {
    if (this.#engine.holding) await this.#engine.unheld();
    const r = o.record;
    const out = this.#tx(() => {
      // Inside the write lock: no revocation or other renewal of this lineage can interleave.
      const parent = this.db.prepare('SELECT * FROM certificates WHERE serial = ?').get(serialBytes(r.renewedFrom)) as Row | undefined;
      if (!parent) throw new MutualError('CERT_NOT_FOUND', { serial: r.renewedFrom, detail: r.renewedFrom });
      if (parent.status !== 'valid') throw new MutualError('CERT_REVOKED', { serial: r.renewedFrom, detail: `${r.renewedFrom} was revoked before its renewal was recorded` });
      const recent = (this.db.prepare('SELECT issued_at AS t FROM certificates WHERE renewed_from = ? AND issued_at > ? ORDER BY issued_at DESC LIMIT ?')
        .all(r.renewedFrom, sec(r.issuedAt) - o.limit.windowSeconds, o.limit.max) as Row[]).map((x) => Number(x.t));
      checkRenewalLimit(r.renewedFrom, sec(r.issuedAt), recent, o.limit);
      const lineage = (parent.lineage as string | null) ?? Buffer.from(parent.serial as Uint8Array).toString('hex');
      this.#insertCert.run(serialBytes(r.serial), r.issuerKeyId, r.role, r.subject, r.identity ?? null, JSON.stringify(r.names), sec(r.notBefore), sec(r.notAfter),
        r.der, r.renewedFrom, sec(r.issuedAt), r.issuedBy);
      this.db.prepare('UPDATE certificates SET lineage = ? WHERE serial = ?').run(lineage, serialBytes(r.serial));
      this.#appendAudit({ actor: r.issuedBy, action: 'issue', target: r.serial, at: r.issuedAt,
        details: { issuer: r.issuerKeyId, role: r.role, subject: r.subject, fingerprint: r.fingerprint, renewedFrom: r.renewedFrom } });
      const others = this.db.prepare(`SELECT * FROM certificates WHERE (lineage = ? OR serial = ?) AND status = 'valid' AND not_after > ? AND serial NOT IN (?, ?) ORDER BY id`)
        .all(lineage, serialBytes(lineage), sec(o.supersedeExpiringAfter), serialBytes(r.renewedFrom), serialBytes(r.serial)) as Row[];
      const superseded = others.map((row) => this.#revokeRow(row, r.issuedAt, 'superseded', r.issuedBy, { supersededBy: r.serial }));
      for (const kid of new Set(superseded.map((c) => c.issuerKeyId))) this.#packIfNeeded(kid);
      return { superseded };
    }, 1);
    await this.#engine.durable();
    return out;
  }

  /** Packs loose CRL entries into one chunk once there are enough of them (inside the caller's transaction). */
  #packIfNeeded(issuerKeyId: string): void {
    const { n } = this.db.prepare('SELECT count(*) AS n FROM crl_entries WHERE issuer_kid = ?').get(issuerKeyId) as { n: number };
    if (n < this.#packThreshold) return;
    this.packCrlEntries(issuerKeyId);
  }

  /** Moves all loose CRL entries of an issuer into one chunk. */
  packCrlEntries(issuerKeyId: string): void {
    const rows = this.db.prepare('SELECT not_after, entry FROM crl_entries WHERE issuer_kid = ? ORDER BY not_after').all(issuerKeyId) as Row[];
    if (rows.length === 0) return;
    const notAfter = new Uint32Array(rows.length);
    const parts: Uint8Array[] = [];
    rows.forEach((r, i) => {
      notAfter[i] = Number(r.not_after);
      parts.push(r.entry as Uint8Array);
    });
    this.db.prepare('INSERT INTO crl_chunks (issuer_kid, min_not_after, max_not_after, count, entries, not_afters) VALUES (?,?,?,?,?,?)')
      .run(issuerKeyId, notAfter[0], notAfter[rows.length - 1], rows.length, Buffer.concat(parts), Buffer.from(notAfter.buffer));
    this.db.prepare('DELETE FROM crl_entries WHERE issuer_kid = ?').run(issuerKeyId);
  }

  async getCertificate(serial: string, issuerKeyId?: string): Promise<StoredCertificate | undefined> {
    const s = serialBytes(serial.toLowerCase().replace(/^(00)+(?=.)/, ''));
    const row = (issuerKeyId ? this.#certBySerialAndIssuer.get(s, issuerKeyId) : this.#certBySerial.get(s)) as Row | undefined;
    return row ? toStored(row) : undefined;
  }

  async listCertificates(f: ListFilter): Promise<StoredCertificate[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.role) (where.push('role = ?'), args.push(f.role));
    if (f.status) (where.push('status = ?'), args.push(f.status));
    if (f.expiringBefore) (where.push('not_after < ?'), args.push(sec(f.expiringBefore)));
    if (f.notExpiredAt) (where.push('not_after >= ?'), args.push(sec(f.notExpiredAt)));
    if (f.identity) (where.push('identity = ?'), args.push(f.identity));
    const sql = `SELECT * FROM certificates ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY not_after, id LIMIT ?`;
    return (this.db.prepare(sql).all(...args, f.limit ?? 1000) as Row[]).map(toStored);
  }

  async crlEntries(issuerKeyId: string, now: Date): Promise<Buffer[]> {
    return this.crlEntriesSync(issuerKeyId, now);
  }

  /** Synchronous form of crlEntries. */
  crlEntriesSync(issuerKeyId: string, now: Date): Buffer[] {
    const cut = sec(now);
    const out: Buffer[] = [];
    const chunks = this.db.prepare('SELECT min_not_after, entries, not_afters FROM crl_chunks WHERE issuer_kid = ? AND max_not_after > ?');
    for (const c of chunks.iterate(issuerKeyId, cut) as Iterable<Row>) {
      const entries = Buffer.from(c.entries as Uint8Array);
      if (Number(c.min_not_after) > cut) out.push(entries);
      else {
        const na = c.not_afters as Uint8Array;
        out.push(dropExpired(entries, new Uint32Array(na.buffer.slice(na.byteOffset, na.byteOffset + na.byteLength)), now));
      }
    }
    const loose = this.db.prepare('SELECT entry FROM crl_entries WHERE issuer_kid = ? AND not_after > ?').all(issuerKeyId, cut) as Row[];
    if (loose.length) out.push(Buffer.concat(loose.map((r) => r.entry as Uint8Array)));
    return out;
  }

  async nextCrlNumber(issuerKeyId: string): Promise<bigint> {
    if (this.#engine.holding) await this.#engine.unheld();
    const n = this.#tx(() => {
      this.db.prepare('INSERT INTO crl_numbers (issuer_kid, number) VALUES (?, 1) ON CONFLICT(issuer_kid) DO UPDATE SET number = number + 1').run(issuerKeyId);
      const { number } = this.db.prepare('SELECT number FROM crl_numbers WHERE issuer_kid = ?').get(issuerKeyId) as { number: number };
      return BigInt(number);
    });
    await this.#engine.durable();
    return n;
  }

  async audit(entry: AuditInput): Promise<void> {
    if (this.#engine.holding) await this.#engine.unheld();
    this.#tx(() => this.#appendAudit(entry));
    await this.#engine.durable();
  }

  async consumeToken(jti: string, expiresAt: Date, actor: string): Promise<boolean> {
    if (this.#engine.holding) await this.#engine.unheld();
    const fresh = this.#tx(() => this.#spendToken({ jti, expiresAt, actor }));
    // A token is spent once its use is on disk: a crash cannot let it be replayed.
    if (fresh) await this.#engine.durable();
    return fresh;
  }

  async revocationsSince(cursor: number, limit = 10_000): Promise<{ cursor: number; items: RevocationEvent[] }> {
    const rows = this.db.prepare("SELECT seq, at, target, details FROM audit WHERE action = 'revoke' AND seq > ? ORDER BY seq LIMIT ?").all(cursor, limit) as Row[];
    const items = rows.map((r) => {
      const d = JSON.parse(r.details as string) as { issuer: string; reason: RevocationReason };
      return { issuerKeyId: d.issuer, serial: r.target as string, revokedAt: date(r.at as number)!, reason: d.reason };
    });
    const last = rows.length ? Number(rows[rows.length - 1].seq) : cursor;
    // With nothing new, the cursor still moves to the log's head so the next poll starts there.
    return { cursor: rows.length ? last : Math.max(cursor, this.#seq), items };
  }

  async withJobLock(_name: string, fn: () => Promise<void>): Promise<boolean> {
    await fn();
    return true;
  }

  async *auditEntries(): AsyncIterable<AuditEntry> {
    for (const r of this.db.prepare('SELECT * FROM audit ORDER BY seq').iterate() as Iterable<Row>) yield toAuditEntry(r);
  }

  async close(): Promise<void> {
    await this.#engine.close();
  }

  /**
   * The monitor's expiry scan (src/monitor/scan-inventory.ts): for each subject (the identity,
   * else role + subject), its newest valid certificate, reported to `cb` only when that newest
   * notAfter falls in [`from`, `to`). Certificates renewed since (a newer valid one with the same
   * subject exists) are never reported. Returns the total number of certificates and how many are
   * unexpired at `now`.
   *
   * Only rows with notAfter >= `from` are grouped: a newer certificate always has a later notAfter,
   * so older history cannot change the answer. The grouping runs inside SQLite and only reported
   * rows cross into JavaScript (node:sqlite costs ~1.4 us per row returned; SQLite's own scan of
   * 1,000,000 rows ~0.3 s). Two plans, chosen by an index-only count of the window:
   * - a wide window (>= 1/20 of the table, e.g. 90-day certificates renewed at 2/3, whose
   *   predecessors are all in it): one sequential scan grouping every row >= `from`
   *   (1,000,000 rows x 5 generations: 0.6 s here; through the notAfter index 3.8 s, random reads);
   * - a narrow window: the subjects in the window first (through the index), then one scan that
   *   groups only the rows of those subjects (1,000,000 distinct subjects: 0.8 s against 1.8 s for
   *   sorting all of them).
   */
  scanExpiry(
    o: { from: Date; to: Date; now: Date },
    cb: (row: [serial: Uint8Array, role: string, identity: string | null, subject: string, notAfter: number, issuerKeyId: string]) => void,
  ): { total: number; unexpired: number } {
    const from = sec(o.from);
    const to = Math.ceil(o.to.getTime() / 1000);
    const counts = this.db.prepare(
      'SELECT (SELECT count(*) FROM certificates) AS total, (SELECT count(*) FROM certificates WHERE not_after >= ? AND not_after < ?) AS window, (SELECT count(*) FROM certificates WHERE not_after > ?) AS unexpired',
    ).get(from, to, sec(o.now)) as { total: number; window: number; unexpired: number };
    const key = "coalesce(identity, role || ':' || subject)";
    const sql = Number(counts.window) * 20 >= Number(counts.total)
      ? `SELECT serial, role, identity, subject, max(not_after) AS newest, issuer_kid FROM certificates NOT INDEXED
         WHERE not_after >= ?1 AND status = 'valid' GROUP BY ${key} HAVING newest < ?2`
      : `WITH w AS MATERIALIZED (SELECT DISTINCT ${key} AS k FROM certificates INDEXED BY certificates_not_after WHERE not_after >= ?1 AND not_after < ?2 AND status = 'valid')
         SELECT serial, role, identity, subject, max(not_after) AS newest, issuer_kid FROM certificates NOT INDEXED
         WHERE not_after >= ?1 AND status = 'valid' AND ${key} IN w GROUP BY ${key} HAVING newest < ?2`;
    if (Number(counts.window) > 0) {
      const st = this.db.prepare(sql);
      st.setReturnArrays(true);
      for (const row of st.iterate(from, to) as Iterable<[Uint8Array, string, string | null, string, number, string]>) cb(row);
    }
    return { total: Number(counts.total), unexpired: Number(counts.unexpired) };
  }
}

function migrate(db: DatabaseSync): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const done = new Set((db.prepare('SELECT version FROM schema_migrations').all() as Row[]).map((r) => Number(r.version)));
  for (const m of SQLITE_MIGRATIONS) {
    if (done.has(m.version)) continue;
    db.exec('BEGIN IMMEDIATE');
    try {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, sec(new Date()));
      db.exec('COMMIT');
    } catch (e) {
      db.exec('ROLLBACK');
      throw e;
    }
  }
}
