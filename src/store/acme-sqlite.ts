/**
 * The ACME store (ca/acme/acme-store.ts) on the SQLite store's connection: every write runs in
 * the SqliteStore's transaction (BEGIN IMMEDIATE: SQLite's one write lock serializes the
 * compare-and-sets and the rate limit) and answers once it is on disk (the engine's WAL sync), so
 * finalize's certificate and order are one commit, safe against kill -9.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { CertificateRecord } from '../ca/store.ts';
import type {
  AcmeAccount, AcmeAuthorizationRecord, AcmeEabKey, AcmeIdentifier, AcmeOrderError, AcmeOrderRecord, AcmeStore, ChallengeOutcome,
} from '../ca/acme/acme-store.ts';
import { MutualError } from '../core/errors.ts';
import {
  accountValues, authorizationFailed, authorizationValues, challengesJson, finishedAuthorization, orderValues, rateLimited, toAccount, toAuthorization, toEabKey, toOrder,
} from './acme-rows.ts';
import { sec, type Row } from './rows.ts';

/** What the SqliteStore lends: its durable write transaction and its certificate insert. */
export interface SqliteWrites {
  /** Runs `fn` in one write transaction (with the audit head read) and resolves once it is on disk. */
  write<T>(fn: () => T, records?: number): Promise<T>;
  /** Inserts a certificate and its audit entry inside the current transaction. */
  insertIssued(r: CertificateRecord): void;
}

const bool = (b: boolean): number => (b ? 1 : 0);

/** See the module comment. Made by SqliteStore; reached as `store.acme`. */
export class AcmeSqliteStore implements AcmeStore {
  readonly #db: DatabaseSync;
  readonly #w: SqliteWrites;

  constructor(db: DatabaseSync, writes: SqliteWrites) {
    this.#db = db;
    this.#w = writes;
  }

  /** Statements compiled once: preparing costs more than running most of these queries. */
  readonly #statements = new Map<string, StatementSync>();

  #prepared(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, (st = this.#db.prepare(sql)));
    return st;
  }

  #get(sql: string, ...args: unknown[]): Row | undefined {
    return this.#prepared(sql).get(...(args as never[])) as Row | undefined;
  }

  #all(sql: string, ...args: unknown[]): Row[] {
    return this.#prepared(sql).all(...(args as never[])) as Row[];
  }

  #run(sql: string, ...args: unknown[]): number {
    return Number(this.#prepared(sql).run(...(args as never[])).changes);
  }

  async secret(name: string, fresh: Buffer): Promise<Buffer> {
    const have = this.#get('SELECT value FROM acme_secrets WHERE name = ?', name);
    if (have) return Buffer.from(have.value as Uint8Array);
    return this.#w.write(() => {
      this.#run('INSERT INTO acme_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', name, fresh);
      return Buffer.from(this.#get('SELECT value FROM acme_secrets WHERE name = ?', name)!.value as Uint8Array);
    });
  }

  /** Nonce spends waiting for the next batch: one transaction spends all those of an event-loop turn. */
  #spends: { nonce: string; expiresAt: Date; resolve: (spent: boolean) => void; reject: (e: unknown) => void }[] = [];

  spendNonce(nonce: string, expiresAt: Date): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (this.#spends.push({ nonce, expiresAt, resolve, reject }) === 1) setImmediate(() => this.#spendBatch());
    });
  }

  /**
   * Spends the nonces queued since the last batch in one transaction (every ACME request spends
   * one, so a transaction each was the store's largest write load). Each insert still decides its
   * own nonce: a second spend of one nonce, in this batch or any other, inserts nothing and is false.
   */
  #spendBatch(): void {
    const batch = this.#spends;
    this.#spends = [];
    this.#w.write(() => batch.map((b) => this.#run('INSERT INTO acme_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING', b.nonce, sec(b.expiresAt)) === 1))
      .then((spent) => batch.forEach((b, i) => b.resolve(spent[i])), (e: unknown) => batch.forEach((b) => b.reject(e)));
  }

  createAccount(a: AcmeAccount, eab?: { keyId: string; at: Date }): Promise<{ account: AcmeAccount; created: boolean }> {
    return this.#w.write(() => {
      const existing = this.#get('SELECT * FROM acme_accounts WHERE thumbprint = ?', a.thumbprint);
      if (existing) return { account: toAccount(existing), created: false };
      if (eab) {
        const k = this.#get('SELECT * FROM acme_eab_keys WHERE key_id = ?', eab.keyId);
        if (!k) throw new MutualError('ACME_EAB_INVALID', { detail: `no EAB key ${JSON.stringify(eab.keyId.slice(0, 64))}` });
        if (k.account_id) throw new MutualError('ACME_EAB_INVALID', { detail: `EAB key ${eab.keyId} is already bound to an account` });
        if (k.expires_at !== null && Number(k.expires_at) <= sec(eab.at)) throw new MutualError('ACME_EAB_INVALID', { detail: `EAB key ${eab.keyId} has expired` });
        this.#run('UPDATE acme_eab_keys SET account_id = ? WHERE key_id = ?', a.id, eab.keyId);
      }
      this.#run('INSERT INTO acme_accounts (id, thumbprint, jwk, status, contact, tos_agreed, eab_key_id, created_at) VALUES (?,?,?,?,?,?,?,?)',
        ...accountValues({ ...a, ...(eab ? { eabKeyId: eab.keyId } : {}) }, bool));
      return { account: toAccount(this.#get('SELECT * FROM acme_accounts WHERE id = ?', a.id)!), created: true };
    });
  }

  async account(id: string): Promise<AcmeAccount | undefined> {
    const r = this.#get('SELECT * FROM acme_accounts WHERE id = ?', id);
    return r ? toAccount(r) : undefined;
  }

  async accountByThumbprint(thumbprint: string): Promise<AcmeAccount | undefined> {
    const r = this.#get('SELECT * FROM acme_accounts WHERE thumbprint = ?', thumbprint);
    return r ? toAccount(r) : undefined;
  }

  updateAccount(id: string, patch: { contact?: string[]; status?: AcmeAccount['status'] }): Promise<AcmeAccount | undefined> {
    return this.#w.write(() => {
      if (patch.contact) this.#run('UPDATE acme_accounts SET contact = ? WHERE id = ?', JSON.stringify(patch.contact), id);
      if (patch.status) this.#run('UPDATE acme_accounts SET status = ? WHERE id = ?', patch.status, id);
      const r = this.#get('SELECT * FROM acme_accounts WHERE id = ?', id);
      return r ? toAccount(r) : undefined;
    });
  }

  changeAccountKey(id: string, jwk: JsonWebKey, thumbprint: string): Promise<AcmeAccount> {
    return this.#w.write(() => {
      const other = this.#get('SELECT id FROM acme_accounts WHERE thumbprint = ? AND id <> ?', thumbprint, id);
      if (other) throw new MutualError('ACME_KEY_IN_USE', { detail: `account ${String(other.id)} has this key`, accountId: other.id });
      if (this.#run('UPDATE acme_accounts SET jwk = ?, thumbprint = ? WHERE id = ?', JSON.stringify(jwk), thumbprint, id) === 0) {
        throw new MutualError('ACME_NOT_FOUND', { detail: `no account ${id}` });
      }
      return toAccount(this.#get('SELECT * FROM acme_accounts WHERE id = ?', id)!);
    });
  }

  createEabKey(k: AcmeEabKey): Promise<void> {
    return this.#w.write(() => {
      this.#run('INSERT INTO acme_eab_keys (key_id, hmac_key, names, client_profile, created_at, expires_at, account_id) VALUES (?,?,?,?,?,?,NULL)',
        k.keyId, k.hmacKey, JSON.stringify(k.names), bool(k.clientProfile), sec(k.createdAt), k.expiresAt ? sec(k.expiresAt) : null);
    });
  }

  async eabKey(keyId: string): Promise<AcmeEabKey | undefined> {
    const r = this.#get('SELECT * FROM acme_eab_keys WHERE key_id = ?', keyId);
    return r ? toEabKey(r) : undefined;
  }

  async eabKeys(): Promise<AcmeEabKey[]> {
    return this.#all('SELECT * FROM acme_eab_keys ORDER BY created_at, key_id').map(toEabKey);
  }

  createOrder(order: AcmeOrderRecord, authorizations: AcmeAuthorizationRecord[], limit: { max: number; windowSeconds: number }): Promise<void> {
    return this.#w.write(() => {
      // Inside the write lock: no other order of this account can be counted or stored meanwhile.
      // The max-th order in the window, if there is one (read on the index, no rows materialized), then the oldest.
      const since = sec(order.createdAt) - limit.windowSeconds;
      const full = this.#get('SELECT created_at FROM acme_orders WHERE account_id = ? AND created_at > ? ORDER BY created_at LIMIT 1 OFFSET ?', order.accountId, since, limit.max - 1);
      if (full) {
        const oldest = this.#get('SELECT created_at FROM acme_orders WHERE account_id = ? AND created_at > ? ORDER BY created_at LIMIT 1', order.accountId, since)!;
        throw rateLimited(limit.max, limit.windowSeconds, Number(oldest.created_at), order.createdAt);
      }
      for (const a of authorizations) {
        this.#run('INSERT INTO acme_authorizations (id, account_id, type, value, wildcard, status, expires_at, challenges) VALUES (?,?,?,?,?,?,?,?)', ...authorizationValues(a, bool));
      }
      this.#run(`INSERT INTO acme_orders (id, account_id, status, expires_at, identifiers, not_before, not_after, certificate_id, replaces, error, created_at)
                 VALUES (?,?,?,?,?,?,?,?,?,?,?)`, ...orderValues(order));
      order.authorizationIds.forEach((id, i) => this.#run('INSERT INTO acme_order_authorizations (order_id, authorization_id, position) VALUES (?,?,?)', order.id, id, i));
      // An order whose authorizations were all reused, valid, is ready at once.
      this.#readyIfAllValid(order.id);
    });
  }

  async order(id: string): Promise<AcmeOrderRecord | undefined> {
    const r = this.#get('SELECT * FROM acme_orders WHERE id = ?', id);
    if (!r) return undefined;
    const ids = this.#all('SELECT authorization_id FROM acme_order_authorizations WHERE order_id = ? ORDER BY position', id).map((x) => x.authorization_id as string);
    return toOrder(r, ids);
  }

  async orderIds(accountId: string, limit: number): Promise<string[]> {
    return this.#all('SELECT id FROM acme_orders WHERE account_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?', accountId, limit).map((r) => r.id as string);
  }

  async authorization(id: string): Promise<AcmeAuthorizationRecord | undefined> {
    const r = this.#get('SELECT * FROM acme_authorizations WHERE id = ?', id);
    return r ? toAuthorization(r) : undefined;
  }

  async reusableAuthorization(accountId: string, identifier: AcmeIdentifier, after: Date): Promise<AcmeAuthorizationRecord | undefined> {
    const r = this.#get(`SELECT * FROM acme_authorizations WHERE account_id = ? AND value = ? AND type = ? AND status IN ('pending', 'valid') AND expires_at > ?
                         ORDER BY status = 'valid' DESC, expires_at DESC LIMIT 1`, accountId, identifier.value, identifier.type, sec(after));
    return r ? toAuthorization(r) : undefined;
  }

  startChallenge(authorizationId: string, challengeId: string): Promise<boolean> {
    return this.#w.write(() => {
      const r = this.#get("SELECT * FROM acme_authorizations WHERE id = ? AND status = 'pending'", authorizationId);
      if (!r) return false;
      const a = toAuthorization(r);
      const c = a.challenges.find((x) => x.id === challengeId);
      if (!c || c.status !== 'pending') return false;
      c.status = 'processing';
      this.#run('UPDATE acme_authorizations SET challenges = ? WHERE id = ?', challengesJson(a.challenges), authorizationId);
      return true;
    });
  }

  finishChallenge(authorizationId: string, challengeId: string, outcome: ChallengeOutcome): Promise<void> {
    return this.#w.write(() => {
      const r = this.#get("SELECT * FROM acme_authorizations WHERE id = ? AND status = 'pending'", authorizationId);
      if (!r) return;
      const a = finishedAuthorization(toAuthorization(r), challengeId, outcome);
      this.#run('UPDATE acme_authorizations SET status = ?, challenges = ? WHERE id = ?', a.status, challengesJson(a.challenges), authorizationId);
      const orders = this.#all("SELECT o.id FROM acme_orders o JOIN acme_order_authorizations oa ON oa.order_id = o.id WHERE oa.authorization_id = ? AND o.status = 'pending'", authorizationId);
      for (const o of orders) {
        if (outcome.valid) this.#readyIfAllValid(o.id as string);
        else this.#run("UPDATE acme_orders SET status = 'invalid', error = ? WHERE id = ?", JSON.stringify(authorizationFailed(a, outcome.error)), o.id);
      }
    });
  }

  /** A pending order all of whose authorizations are valid becomes ready (inside the caller's transaction). */
  #readyIfAllValid(orderId: string): void {
    this.#run(`UPDATE acme_orders SET status = 'ready' WHERE id = ? AND status = 'pending' AND NOT EXISTS (
                 SELECT 1 FROM acme_order_authorizations oa JOIN acme_authorizations a ON a.id = oa.authorization_id WHERE oa.order_id = ? AND a.status <> 'valid')`, orderId, orderId);
  }

  deactivateAuthorization(id: string): Promise<void> {
    return this.#w.write(() => {
      if (this.#run("UPDATE acme_authorizations SET status = 'deactivated' WHERE id = ? AND status IN ('pending', 'valid')", id) === 0) return;
      const error = JSON.stringify({ code: 'ACME_UNAUTHORIZED', detail: `authorization ${id} was deactivated` });
      this.#run(`UPDATE acme_orders SET status = 'invalid', error = ? WHERE status IN ('pending', 'ready') AND id IN (SELECT order_id FROM acme_order_authorizations WHERE authorization_id = ?)`, error, id);
    });
  }

  beginFinalize(orderId: string): Promise<boolean> {
    return this.#w.write(() => this.#run("UPDATE acme_orders SET status = 'processing' WHERE id = ? AND status = 'ready'", orderId) === 1);
  }

  completeFinalize(orderId: string, certificate: CertificateRecord): Promise<void> {
    return this.#w.write(() => {
      if (this.#run("UPDATE acme_orders SET status = 'valid', certificate_id = ? WHERE id = ? AND status = 'processing'", certificate.serial, orderId) === 0) {
        throw new MutualError('ACME_ORDER_NOT_READY', { detail: `order ${orderId} is no longer processing` });
      }
      this.#w.insertIssued(certificate);
    }, 1);
  }

  failFinalize(orderId: string, error: AcmeOrderError): Promise<void> {
    return this.#w.write(() => {
      this.#run("UPDATE acme_orders SET status = 'invalid', error = ? WHERE id = ? AND status = 'processing'", JSON.stringify(error), orderId);
    });
  }

  expire(now: Date): Promise<void> {
    const t = sec(now);
    return this.#w.write(() => {
      this.#run('DELETE FROM acme_nonces WHERE expires_at < ?', t);
      this.#run("DELETE FROM acme_order_authorizations WHERE order_id IN (SELECT id FROM acme_orders WHERE expires_at < ? AND status <> 'valid')", t);
      this.#run("DELETE FROM acme_orders WHERE expires_at < ? AND status <> 'valid'", t);
      this.#run('DELETE FROM acme_authorizations WHERE expires_at < ? AND id NOT IN (SELECT authorization_id FROM acme_order_authorizations)', t);
    });
  }
}
