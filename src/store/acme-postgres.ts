/**
 * The ACME store (ca/acme/acme-store.ts) on the PostgreSQL store's pool, for replicas sharing one
 * database. Concurrency: compare-and-sets are single UPDATEs with the old status in the WHERE
 * (PostgreSQL re-checks it after a concurrent update commits, so one caller wins); an EAB key is
 * bound with `FOR UPDATE` on its row; orders of one account are counted under `FOR UPDATE` on the
 * account's row; spent nonces are a primary key. Finalize's certificate goes in through the
 * PostgresStore's own insert (certificate + audit chain) in the transaction that marks the order valid.
 */
import type { Pool, PoolClient } from 'pg';
import type { CertificateRecord } from '../ca/store.ts';
import type {
  AcmeAccount, AcmeAuthorizationRecord, AcmeEabKey, AcmeIdentifier, AcmeOrderError, AcmeOrderRecord, AcmeStore, ChallengeOutcome,
} from '../ca/acme/acme-store.ts';
import { MutualError } from '../core/errors.ts';
import {
  accountValues, authorizationFailed, authorizationValues, challengesJson, finishedAuthorization, orderValues, rateLimited, toAccount, toAuthorization, toEabKey, toOrder,
} from './acme-rows.ts';
import { sec, type Row } from './rows.ts';

/** What the PostgresStore lends: its transaction and its certificate insert (with the audit append). */
export interface PostgresWrites {
  tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T>;
  insertIssued(c: PoolClient, r: CertificateRecord): Promise<void>;
}

const bool = (b: boolean): boolean => b;

/** Wraps a database failure (not a coded refusal) as STORE_FAILED. */
function failed(e: unknown): MutualError {
  return e instanceof MutualError ? e : new MutualError('STORE_FAILED', { detail: (e as Error).message }, { cause: e });
}

/** `$1, $2, ... $n`. */
const params = (n: number, from = 1): string => Array.from({ length: n }, (_, i) => `$${i + from}`).join(', ');

/** See the module comment. Made by PostgresStore; reached as `store.acme`. */
export class AcmePostgresStore implements AcmeStore {
  readonly #pool: Pool;
  readonly #w: PostgresWrites;

  constructor(pool: Pool, writes: PostgresWrites) {
    this.#pool = pool;
    this.#w = writes;
  }

  async #one(sql: string, args: unknown[]): Promise<Row | undefined> {
    return (await this.#pool.query(sql, args)).rows[0] as Row | undefined;
  }

  async #write<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    try {
      return await this.#w.tx(fn);
    } catch (e) {
      throw failed(e);
    }
  }

  async secret(name: string, fresh: Buffer): Promise<Buffer> {
    return this.#write(async (c) => {
      await c.query('INSERT INTO acme_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, fresh]);
      return (await c.query('SELECT value FROM acme_secrets WHERE name = $1', [name])).rows[0].value as Buffer;
    });
  }

  async spendNonce(nonce: string, expiresAt: Date): Promise<boolean> {
    try {
      const r = await this.#pool.query('INSERT INTO acme_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING', [nonce, sec(expiresAt)]);
      return r.rowCount === 1;
    } catch (e) {
      throw failed(e);
    }
  }

  createAccount(a: AcmeAccount, eab?: { keyId: string; at: Date }): Promise<{ account: AcmeAccount; created: boolean }> {
    return this.#write(async (c) => {
      if (eab) {
        // The key's row is locked first: of two accounts racing for one key, the second waits and
        // then finds it bound.
        const k = (await c.query('SELECT * FROM acme_eab_keys WHERE key_id = $1 FOR UPDATE', [eab.keyId])).rows[0] as Row | undefined;
        const existing = (await c.query('SELECT * FROM acme_accounts WHERE thumbprint = $1', [a.thumbprint])).rows[0] as Row | undefined;
        if (existing) return { account: toAccount(existing), created: false };
        if (!k) throw new MutualError('ACME_EAB_INVALID', { detail: `no EAB key ${JSON.stringify(eab.keyId.slice(0, 64))}` });
        if (k.account_id) throw new MutualError('ACME_EAB_INVALID', { detail: `EAB key ${eab.keyId} is already bound to an account` });
        if (k.expires_at !== null && Number(k.expires_at) <= sec(eab.at)) throw new MutualError('ACME_EAB_INVALID', { detail: `EAB key ${eab.keyId} has expired` });
        await c.query('UPDATE acme_eab_keys SET account_id = $1 WHERE key_id = $2', [a.id, eab.keyId]);
      }
      // Two requests for one new key: the unique thumbprint makes the second insert do nothing.
      const ins = await c.query(`INSERT INTO acme_accounts (id, thumbprint, jwk, status, contact, tos_agreed, eab_key_id, created_at) VALUES (${params(8)})
                                 ON CONFLICT (thumbprint) DO NOTHING`, accountValues({ ...a, ...(eab ? { eabKeyId: eab.keyId } : {}) }, bool));
      if (ins.rowCount === 0) {
        if (eab) throw new MutualError('ACME_KEY_IN_USE', { detail: 'an account with this key was created meanwhile' });
        return { account: toAccount((await c.query('SELECT * FROM acme_accounts WHERE thumbprint = $1', [a.thumbprint])).rows[0]), created: false };
      }
      return { account: toAccount((await c.query('SELECT * FROM acme_accounts WHERE id = $1', [a.id])).rows[0]), created: true };
    });
  }

  async account(id: string): Promise<AcmeAccount | undefined> {
    const r = await this.#one('SELECT * FROM acme_accounts WHERE id = $1', [id]);
    return r ? toAccount(r) : undefined;
  }

  async accountByThumbprint(thumbprint: string): Promise<AcmeAccount | undefined> {
    const r = await this.#one('SELECT * FROM acme_accounts WHERE thumbprint = $1', [thumbprint]);
    return r ? toAccount(r) : undefined;
  }

  updateAccount(id: string, patch: { contact?: string[]; status?: AcmeAccount['status'] }): Promise<AcmeAccount | undefined> {
    return this.#write(async (c) => {
      const r = (await c.query('UPDATE acme_accounts SET contact = coalesce($2, contact), status = coalesce($3, status) WHERE id = $1 RETURNING *',
        [id, patch.contact ? JSON.stringify(patch.contact) : null, patch.status ?? null])).rows[0] as Row | undefined;
      return r ? toAccount(r) : undefined;
    });
  }

  changeAccountKey(id: string, jwk: JsonWebKey, thumbprint: string): Promise<AcmeAccount> {
    return this.#write(async (c) => {
      const other = (await c.query('SELECT id FROM acme_accounts WHERE thumbprint = $1 AND id <> $2', [thumbprint, id])).rows[0] as Row | undefined;
      if (other) throw new MutualError('ACME_KEY_IN_USE', { detail: `account ${String(other.id)} has this key`, accountId: other.id });
      let r: Row | undefined;
      try {
        r = (await c.query('UPDATE acme_accounts SET jwk = $2, thumbprint = $3 WHERE id = $1 RETURNING *', [id, JSON.stringify(jwk), thumbprint])).rows[0] as Row | undefined;
      } catch (e) {
        // Another rollover to the same key committed between the check and the update.
        if ((e as { code?: string }).code === '23505') throw new MutualError('ACME_KEY_IN_USE', { detail: 'another account took this key meanwhile' });
        throw e;
      }
      if (!r) throw new MutualError('ACME_NOT_FOUND', { detail: `no account ${id}` });
      return toAccount(r);
    });
  }

  async createEabKey(k: AcmeEabKey): Promise<void> {
    await this.#write((c) => c.query('INSERT INTO acme_eab_keys (key_id, hmac_key, names, client_profile, created_at, expires_at, account_id) VALUES ($1, $2, $3, $4, $5, $6, NULL)',
      [k.keyId, k.hmacKey, JSON.stringify(k.names), k.clientProfile, sec(k.createdAt), k.expiresAt ? sec(k.expiresAt) : null]));
  }

  async eabKey(keyId: string): Promise<AcmeEabKey | undefined> {
    const r = await this.#one('SELECT * FROM acme_eab_keys WHERE key_id = $1', [keyId]);
    return r ? toEabKey(r) : undefined;
  }

  async eabKeys(): Promise<AcmeEabKey[]> {
    return (await this.#pool.query('SELECT * FROM acme_eab_keys ORDER BY created_at, key_id')).rows.map(toEabKey);
  }

  createOrder(order: AcmeOrderRecord, authorizations: AcmeAuthorizationRecord[], limit: { max: number; windowSeconds: number }): Promise<void> {
    return this.#write(async (c) => {
      // The account's row lock: its orders are counted and stored one at a time on every replica.
      await c.query('SELECT 1 FROM acme_accounts WHERE id = $1 FOR UPDATE', [order.accountId]);
      const since = sec(order.createdAt) - limit.windowSeconds;
      const window = 'SELECT created_at FROM acme_orders WHERE account_id = $1 AND created_at > $2 ORDER BY created_at LIMIT 1';
      if ((await c.query(`${window} OFFSET $3`, [order.accountId, since, limit.max - 1])).rows.length > 0) {
        throw rateLimited(limit.max, limit.windowSeconds, Number((await c.query(window, [order.accountId, since])).rows[0].created_at), order.createdAt);
      }
      for (const a of authorizations) {
        await c.query(`INSERT INTO acme_authorizations (id, account_id, type, value, wildcard, status, expires_at, challenges) VALUES (${params(8)})`, authorizationValues(a, bool));
      }
      await c.query(`INSERT INTO acme_orders (id, account_id, status, expires_at, identifiers, not_before, not_after, certificate_id, replaces, error, created_at)
                     VALUES (${params(11)})`, orderValues(order));
      await c.query('INSERT INTO acme_order_authorizations (order_id, authorization_id, position) SELECT $1, a, p - 1 FROM unnest($2::text[]) WITH ORDINALITY AS u(a, p)',
        [order.id, order.authorizationIds]);
      await this.#readyIfAllValid(c, order.id);
    });
  }

  async order(id: string): Promise<AcmeOrderRecord | undefined> {
    const r = await this.#one('SELECT * FROM acme_orders WHERE id = $1', [id]);
    if (!r) return undefined;
    const ids = (await this.#pool.query('SELECT authorization_id FROM acme_order_authorizations WHERE order_id = $1 ORDER BY position', [id])).rows.map((x) => x.authorization_id as string);
    return toOrder(r, ids);
  }

  async orderIds(accountId: string, limit: number): Promise<string[]> {
    return (await this.#pool.query('SELECT id FROM acme_orders WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2', [accountId, limit])).rows.map((r) => r.id as string);
  }

  async authorization(id: string): Promise<AcmeAuthorizationRecord | undefined> {
    const r = await this.#one('SELECT * FROM acme_authorizations WHERE id = $1', [id]);
    return r ? toAuthorization(r) : undefined;
  }

  async reusableAuthorization(accountId: string, identifier: AcmeIdentifier, after: Date): Promise<AcmeAuthorizationRecord | undefined> {
    const r = await this.#one(`SELECT * FROM acme_authorizations WHERE account_id = $1 AND value = $2 AND type = $3 AND status IN ('pending', 'valid') AND expires_at > $4
                               ORDER BY status = 'valid' DESC, expires_at DESC LIMIT 1`, [accountId, identifier.value, identifier.type, sec(after)]);
    return r ? toAuthorization(r) : undefined;
  }

  startChallenge(authorizationId: string, challengeId: string): Promise<boolean> {
    return this.#write(async (c) => {
      const r = (await c.query("SELECT * FROM acme_authorizations WHERE id = $1 AND status = 'pending' FOR UPDATE", [authorizationId])).rows[0] as Row | undefined;
      if (!r) return false;
      const a = toAuthorization(r);
      const ch = a.challenges.find((x) => x.id === challengeId);
      if (!ch || ch.status !== 'pending') return false;
      ch.status = 'processing';
      await c.query('UPDATE acme_authorizations SET challenges = $1 WHERE id = $2', [challengesJson(a.challenges), authorizationId]);
      return true;
    });
  }

  async finishChallenge(authorizationId: string, challengeId: string, outcome: ChallengeOutcome): Promise<void> {
    await this.#write(async (c) => {
      const r = (await c.query("SELECT * FROM acme_authorizations WHERE id = $1 AND status = 'pending' FOR UPDATE", [authorizationId])).rows[0] as Row | undefined;
      if (!r) return;
      const a = finishedAuthorization(toAuthorization(r), challengeId, outcome);
      await c.query('UPDATE acme_authorizations SET status = $1, challenges = $2 WHERE id = $3', [a.status, challengesJson(a.challenges), authorizationId]);
      const orders = (await c.query(`SELECT o.id FROM acme_orders o JOIN acme_order_authorizations oa ON oa.order_id = o.id
                                     WHERE oa.authorization_id = $1 AND o.status = 'pending' FOR UPDATE OF o`, [authorizationId])).rows;
      for (const o of orders) {
        if (outcome.valid) await this.#readyIfAllValid(c, o.id as string);
        else await c.query("UPDATE acme_orders SET status = 'invalid', error = $1 WHERE id = $2", [JSON.stringify(authorizationFailed(a, outcome.error)), o.id]);
      }
    });
  }

  async #readyIfAllValid(c: PoolClient, orderId: string): Promise<void> {
    await c.query(`UPDATE acme_orders SET status = 'ready' WHERE id = $1 AND status = 'pending' AND NOT EXISTS (
                     SELECT 1 FROM acme_order_authorizations oa JOIN acme_authorizations a ON a.id = oa.authorization_id WHERE oa.order_id = $1 AND a.status <> 'valid')`, [orderId]);
  }

  async deactivateAuthorization(id: string): Promise<void> {
    await this.#write(async (c) => {
      const r = await c.query("UPDATE acme_authorizations SET status = 'deactivated' WHERE id = $1 AND status IN ('pending', 'valid')", [id]);
      if (r.rowCount === 0) return;
      const error = JSON.stringify({ code: 'ACME_UNAUTHORIZED', detail: `authorization ${id} was deactivated` });
      await c.query(`UPDATE acme_orders SET status = 'invalid', error = $1 WHERE status IN ('pending', 'ready') AND id IN (SELECT order_id FROM acme_order_authorizations WHERE authorization_id = $2)`, [error, id]);
    });
  }

  async beginFinalize(orderId: string): Promise<boolean> {
    try {
      return (await this.#pool.query("UPDATE acme_orders SET status = 'processing' WHERE id = $1 AND status = 'ready'", [orderId])).rowCount === 1;
    } catch (e) {
      throw failed(e);
    }
  }

  async completeFinalize(orderId: string, certificate: CertificateRecord): Promise<void> {
    await this.#write(async (c) => {
      const r = await c.query("UPDATE acme_orders SET status = 'valid', certificate_id = $1 WHERE id = $2 AND status = 'processing'", [certificate.serial, orderId]);
      if (r.rowCount === 0) throw new MutualError('ACME_ORDER_NOT_READY', { detail: `order ${orderId} is no longer processing` });
      await this.#w.insertIssued(c, certificate);
    });
  }

  async failFinalize(orderId: string, error: AcmeOrderError): Promise<void> {
    await this.#write((c) => c.query("UPDATE acme_orders SET status = 'invalid', error = $1 WHERE id = $2 AND status = 'processing'", [JSON.stringify(error), orderId]));
  }

  async expire(now: Date): Promise<void> {
    const t = sec(now);
    await this.#write(async (c) => {
      await c.query('DELETE FROM acme_nonces WHERE expires_at < $1', [t]);
      await c.query("DELETE FROM acme_order_authorizations WHERE order_id IN (SELECT id FROM acme_orders WHERE expires_at < $1 AND status <> 'valid')", [t]);
      await c.query("DELETE FROM acme_orders WHERE expires_at < $1 AND status <> 'valid'", [t]);
      await c.query('DELETE FROM acme_authorizations a WHERE expires_at < $1 AND NOT EXISTS (SELECT 1 FROM acme_order_authorizations oa WHERE oa.authorization_id = a.id)', [t]);
    });
  }
}
