/**
 * The ACME store on both backends (SQLite; PostgreSQL with MUTUAL_TEST_PG, skipped without), with
 * two store instances on one database standing for two replicas: an EAB key binds one account
 * under a race, ready -> processing is won once, finalize commits the certificate (in the
 * inventory, with its audit entry) with the valid order, a nonce is spent once, the rate limit
 * holds across instances, and expiry removes only what was abandoned.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { AcmeAuthorizationRecord, AcmeOrderRecord, AcmeStore } from '../../src/ca/acme/acme-store.ts';
import type { CaStore } from '../../src/ca/store.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { HOUR, NOW, plus, postgresBackend, record, sqliteBackend, type Backend } from '../store/fixtures.ts';

const id = () => crypto.randomBytes(16).toString('base64url');

function account(o: { thumbprint?: string } = {}) {
  return { id: id(), status: 'valid' as const, jwk: { kty: 'OKP', crv: 'Ed25519', x: id() }, thumbprint: o.thumbprint ?? id(), contact: [], termsOfServiceAgreed: true, createdAt: NOW };
}

function authorization(accountId: string, value = 'svc.acme.internal', expires = plus(NOW, 8 * HOUR)): AcmeAuthorizationRecord {
  const aid = id();
  return { id: aid, accountId, identifier: { type: 'dns', value }, status: 'pending', expires, wildcard: false, challenges: [{ id: `${aid}0`, type: 'http-01', status: 'pending', token: id() }] };
}

function order(accountId: string, authzs: AcmeAuthorizationRecord[], o: Partial<AcmeOrderRecord> = {}): AcmeOrderRecord {
  return { id: id(), accountId, status: 'pending', expires: plus(NOW, HOUR), identifiers: authzs.map((a) => a.identifier), authorizationIds: authzs.map((a) => a.id), createdAt: NOW, ...o };
}

const LIMIT = { max: 100, windowSeconds: 3600 };

/** An order whose one authorization has been validated: ready. */
async function readyOrder(s: AcmeStore, accountId: string): Promise<AcmeOrderRecord> {
  const a = authorization(accountId);
  const o = order(accountId, [a]);
  await s.createOrder(o, [a], LIMIT);
  assert.equal(await s.startChallenge(a.id, a.challenges[0].id), true);
  assert.equal(await s.startChallenge(a.id, a.challenges[0].id), false, 'processing already');
  await s.finishChallenge(a.id, a.challenges[0].id, { valid: true, at: NOW });
  const ready = (await s.order(o.id))!;
  assert.equal(ready.status, 'ready');
  return ready;
}

function cases(backend: Backend): void {
  describe(backend.name, { skip: backend.skip }, () => {
    const withTwo = async (fn: (a: CaStore, b: CaStore) => Promise<void>) => {
      const opened = await backend.open();
      try {
        await fn(opened.store, await opened.reopen());
      } finally {
        await opened.cleanup();
      }
    };

    test('ok/an-eab-key-binds-one-account-under-a-race', () => withTwo(async (a, b) => {
      await a.acme.createEabKey({ keyId: 'kid-1', hmacKey: crypto.randomBytes(32), names: ['*.acme.internal'], clientProfile: false, createdAt: NOW });
      const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).acme.createAccount(account(), { keyId: 'kid-1', at: NOW })));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one account bound the key');
      for (const r of results) if (r.status === 'rejected') assert.ok(isMutualError(r.reason, 'ACME_EAB_INVALID'), String(r.reason));
      const bound = (await b.acme.eabKey('kid-1'))!;
      const winner = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ account: { id: string } }>).value.account.id;
      assert.equal(bound.accountId, winner);
      assert.equal((await a.acme.account(winner))?.eabKeyId, 'kid-1');
    }));

    test('ok/one-finalize-wins-and-commits-certificate-with-order', () => withTwo(async (a, b) => {
      const acct = (await a.acme.createAccount(account())).account;
      const o = await readyOrder(a.acme, acct.id);
      const won = await Promise.all([a.acme.beginFinalize(o.id), b.acme.beginFinalize(o.id), a.acme.beginFinalize(o.id), b.acme.beginFinalize(o.id)]);
      assert.equal(won.filter(Boolean).length, 1, 'ready -> processing once');
      const cert = record({ issuedBy: `acme:${acct.id}` });
      await b.acme.completeFinalize(o.id, cert);
      const done = (await a.acme.order(o.id))!;
      assert.equal(done.status, 'valid');
      assert.equal(done.certificateId, cert.serial);
      assert.equal((await a.getCertificate(cert.serial))?.issuedBy, `acme:${acct.id}`, 'in the inventory');
      let audited = false;
      for await (const e of a.auditEntries()) if (e.action === 'issue' && e.target === cert.serial) audited = true;
      assert.ok(audited, 'with its audit entry');
      const second = record();
      await assert.rejects(a.acme.completeFinalize(o.id, second), (e) => isMutualError(e, 'ACME_ORDER_NOT_READY'));
      assert.equal(await a.getCertificate(second.serial), undefined, 'nothing recorded for an order not processing');
    }));

    test('ok/a-nonce-is-spent-once-across-two-stores', () => withTwo(async (a, b) => {
      const nonce = id();
      const spent = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).acme.spendNonce(nonce, plus(NOW, 300_000))));
      assert.equal(spent.filter(Boolean).length, 1);
      assert.equal(await a.acme.spendNonce(nonce, plus(NOW, 300_000)), false);
      const k1 = await a.acme.secret('nonce-hmac', Buffer.alloc(32, 1));
      const k2 = await b.acme.secret('nonce-hmac', Buffer.alloc(32, 2));
      assert.deepEqual(k1, k2, 'one shared secret: the first one stored');
    }));

    test('ok/orders-per-hour-hold-across-stores', () => withTwo(async (a, b) => {
      const acct = (await a.acme.createAccount(account())).account;
      const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => {
        const z = authorization(acct.id, `r${i}.acme.internal`);
        return (i % 2 ? a : b).acme.createOrder(order(acct.id, [z]), [z], { max: 3, windowSeconds: 3600 });
      }));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
      for (const r of results) if (r.status === 'rejected') assert.ok(isMutualError(r.reason, 'ACME_RATE_LIMITED'), String(r.reason));
      assert.equal((await b.acme.orderIds(acct.id, 10)).length, 3);
    }));

    test('fail/key-rollover-to-a-key-in-use', () => withTwo(async (a, b) => {
      const x = (await a.acme.createAccount(account())).account;
      const y = (await b.acme.createAccount(account())).account;
      assert.equal((await a.acme.createAccount({ ...account(), thumbprint: x.thumbprint })).created, false, 'an existing key returns its account');
      await assert.rejects(a.acme.changeAccountKey(x.id, y.jwk, y.thumbprint), (e) => isMutualError(e, 'ACME_KEY_IN_USE'));
      const moved = await b.acme.changeAccountKey(x.id, { kty: 'OKP', crv: 'Ed25519', x: 'new' }, 'new-thumbprint');
      assert.equal(moved.thumbprint, 'new-thumbprint');
      assert.equal(await a.acme.accountByThumbprint(x.thumbprint), undefined);
    }));

    test('ok/an-invalid-challenge-fails-its-orders-and-expire-cleans-up', () => withTwo(async (a) => {
      const acct = (await a.acme.createAccount(account())).account;
      const z = authorization(acct.id, 'gone.acme.internal', plus(NOW, 2 * HOUR));
      const abandoned = order(acct.id, [z]);
      await a.acme.createOrder(abandoned, [z], LIMIT);
      await a.acme.startChallenge(z.id, z.challenges[0].id);
      await a.acme.finishChallenge(z.id, z.challenges[0].id, { valid: false, error: { code: 'ACME_CONNECTION', detail: 'refused' } });
      const failed = (await a.acme.order(abandoned.id))!;
      assert.equal(failed.status, 'invalid');
      assert.equal(failed.error?.code, 'ACME_CONNECTION');
      assert.equal((await a.acme.authorization(z.id))?.challenges[0].error?.detail, 'refused');
      const kept = await readyOrder(a.acme, acct.id);
      await a.acme.beginFinalize(kept.id);
      await a.acme.completeFinalize(kept.id, record());
      await a.acme.spendNonce('n-old', plus(NOW, 60_000));
      await a.acme.expire(plus(NOW, HOUR - 1000));
      assert.ok(await a.acme.order(abandoned.id), 'not yet expired');
      await a.acme.expire(plus(NOW, 9 * HOUR));
      assert.equal(await a.acme.order(abandoned.id), undefined);
      assert.equal(await a.acme.authorization(z.id), undefined);
      assert.equal((await a.acme.order(kept.id))?.status, 'valid', 'a valid order stays');
      assert.ok(await a.acme.authorization(kept.authorizationIds[0]), 'with the authorizations it holds');
      assert.equal(await a.acme.spendNonce('n-old', plus(NOW, 60_000)), true, 'the spent nonce was forgotten (its HMAC expiry refuses it anyway)');
    }));
  });
}

cases(sqliteBackend);
cases(postgresBackend);
