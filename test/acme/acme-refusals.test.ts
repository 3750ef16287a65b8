/**
 * What the ACME lifecycle refuses, each with its code and with nothing issued (the inventory is
 * counted): identifiers outside the policy or the EAB key's names (compound subproblems), CSRs
 * that do not match the order, finalize twice or racing, an order not ready, the rate limit, EAB
 * bindings that do not verify or are used twice, unacceptable account keys, terms and contacts,
 * and another account's resources.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { buildCsr } from '../../src/core/csr.ts';
import { isMutualError, type MutualError } from '../../src/core/errors.ts';
import { createEabKey } from '../../src/ca/acme/eab-keys.ts';
import type { AcmeSubproblem } from '../../src/ca/acme/acme-api.ts';
import { openssl } from '../helpers/tools.ts';
import { accountKey, ACCOUNT_URL, csrFor, eabJws, inventoryCount, makeHarness, newAccount, opensslVerify, readyOrder } from './harness.ts';

const dns = (value: string) => ({ type: 'dns' as const, value });
const code = (c: string) => (e: unknown) => isMutualError(e) && e.code === c;

test('fail/identifiers-outside-policy-are-rejected-with-subproblems', async () => {
  const h = await makeHarness();
  try {
    const a = await newAccount(h);
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [dns('ok.acme.internal'), dns('www.elsewhere.example'), { type: 'ip', value: '10.9.9.9' }] }), (e: MutualError) => {
      assert.equal(e.code, 'ACME_COMPOUND');
      const subs = e.fields.subproblems as AcmeSubproblem[];
      assert.deepEqual(subs.map((s) => s.identifier.value), ['www.elsewhere.example', '10.9.9.9']);
      assert.ok(subs.every((s) => s.code === 'ACME_REJECTED_IDENTIFIER'));
      return true;
    });
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [dns('www.elsewhere.example')] }), (e: MutualError) => e.code === 'ACME_REJECTED_IDENTIFIER' && (e.fields.subproblems as AcmeSubproblem[]).length === 1);
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [dns('*.acme.internal')] }), code('ACME_REJECTED_IDENTIFIER'), 'wildcards are not issued');
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [{ type: 'email' as 'dns', value: 'x@acme.internal' }] }), code('ACME_UNSUPPORTED_IDENTIFIER'));
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: Array.from({ length: 101 }, (_, i) => dns(`h${i}.acme.internal`)) }), code('ACME_MALFORMED'));
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [] }), code('ACME_MALFORMED'));
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [dns('ok.acme.internal')], notAfter: new Date() }), code('ACME_MALFORMED'));
    assert.deepEqual(await h.acme.orders(a.id), [], 'no order stored');
  } finally {
    await h.close();
  }
});

test('fail/csr-names-must-equal-the-order', async () => {
  const h = await makeHarness();
  try {
    const a = await newAccount(h);
    const id = await readyOrder(h, a, ['one.acme.internal', 'two.acme.internal']);
    const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const bad = [
      csrFor(['one.acme.internal']),
      csrFor(['one.acme.internal', 'two.acme.internal', 'three.acme.internal']),
      buildCsr({ privateKey: key, commonName: 'one.acme.internal', names: { dns: ['one.acme.internal', 'two.acme.internal'], ip: [], uri: ['spiffe://acme.internal/prod/x'] } }),
      buildCsr({ privateKey: key, commonName: 'other.acme.internal', names: { dns: ['one.acme.internal', 'two.acme.internal'], ip: [], uri: [] } }),
    ];
    for (const csr of bad) await assert.rejects(h.acme.finalize(a.id, id, csr), code('ACME_BAD_CSR'));
    await assert.rejects(h.acme.finalize(a.id, id, Buffer.from('not a csr')), (e) => isMutualError(e) && e.code.startsWith('CSR_') || isMutualError(e, 'DER_MALFORMED'));
    assert.equal(await inventoryCount(h), 0, 'nothing issued');
    assert.equal((await h.acme.order(a.id, id)).status, 'ready', 'a CSR that does not match leaves the order ready');
    const ok = await h.acme.finalize(a.id, id, csrFor(['TWO.acme.internal', 'one.acme.internal']));
    assert.equal(ok.status, 'valid', 'order of names and case do not matter');
  } finally {
    await h.close();
  }
});

test('fail/two-finalizes-race-one-certificate', async () => {
  const h = await makeHarness();
  try {
    const a = await newAccount(h);
    const id = await readyOrder(h, a, ['race.acme.internal']);
    const results = await Promise.allSettled([h.acme.finalize(a.id, id, csrFor(['race.acme.internal'])), h.acme.finalize(a.id, id, csrFor(['race.acme.internal']))]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(isMutualError(lost.reason, 'ACME_ORDER_NOT_READY'));
    assert.equal(await inventoryCount(h), 1, 'one certificate');
    await assert.rejects(h.acme.finalize(a.id, id, csrFor(['race.acme.internal'])), code('ACME_ORDER_NOT_READY'), 'finalize twice');
    assert.equal(await inventoryCount(h), 1);
    const o = await h.acme.order(a.id, id);
    const chain = await h.acme.certificate(a.id, o.certificateId!, 0);
    const v = opensslVerify(h.tc, chain.pem, h.now());
    assert.equal(v.status, 0, v.output);
  } finally {
    await h.close();
  }
});

test('fail/a-refused-issuance-makes-the-order-invalid', async () => {
  // A weak key passes the CSR's names but not the pipeline (KEY_WEAK): the order fails with it.
  const h = await makeHarness();
  try {
    const a = await newAccount(h);
    const id = await readyOrder(h, a, ['weak.acme.internal']);
    // Made by OpenSSL: the project's own CSR builder refuses weak keys.
    const r = openssl(['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', h.tc.file('weak.key', ''), '-subj', '/CN=weak.acme.internal',
      '-addext', 'subjectAltName=DNS:weak.acme.internal', '-outform', 'DER', '-out', h.tc.file('weak.csr', '')]);
    assert.equal(r.status, 0, r.stderr);
    await assert.rejects(h.acme.finalize(a.id, id, fs.readFileSync(`${h.tc.dir}/weak.csr`)), code('KEY_WEAK'));
    const o = await h.acme.order(a.id, id);
    assert.equal(o.status, 'invalid');
    assert.equal(o.error?.code, 'KEY_WEAK');
    assert.equal(await inventoryCount(h), 0);
  } finally {
    await h.close();
  }
});

test('fail/orders-per-hour', async () => {
  const h = await makeHarness({ ordersPerHour: 2 });
  try {
    const a = await newAccount(h);
    await h.acme.newOrder(a.id, { identifiers: [dns('r1.acme.internal')] });
    h.advance(60_000);
    await h.acme.newOrder(a.id, { identifiers: [dns('r2.acme.internal')] });
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [dns('r3.acme.internal')] }), (e: MutualError) => e.code === 'ACME_RATE_LIMITED' && e.fields.retryAfter === 3540);
    const other = await newAccount(h);
    await h.acme.newOrder(other.id, { identifiers: [dns('r3.acme.internal')] });
    h.advance(3540 * 1000);
    await h.acme.newOrder(a.id, { identifiers: [dns('r3.acme.internal')] });
    assert.equal((await h.acme.orders(a.id)).length, 3);
  } finally {
    await h.close();
  }
});

test('fail/external-account-binding', async () => {
  const h = await makeHarness({ externalAccountRequired: true });
  try {
    const store = h.tc.ca.store.acme;
    const eab = await createEabKey(store, { names: ['api.*.acme.internal'], now: h.now() });
    const k = await accountKey();
    const base = { jwk: k.jwk, thumbprint: k.thumbprint, contact: [], termsOfServiceAgreed: true, accountUrl: ACCOUNT_URL };
    await assert.rejects(h.acme.newAccount(base), code('ACME_EXTERNAL_ACCOUNT_REQUIRED'));
    await assert.rejects(h.acme.newAccount({ ...base, eab: await eabJws(k.jwk, eab.keyId, crypto.randomBytes(32)) }), code('ACME_EAB_INVALID'), 'wrong HMAC key');
    await assert.rejects(h.acme.newAccount({ ...base, eab: await eabJws(k.jwk, eab.keyId, eab.hmacKey, 'https://ca.acme.internal/acme/other') }), code('ACME_EAB_INVALID'), 'wrong url');
    await assert.rejects(h.acme.newAccount({ ...base, eab: await eabJws((await accountKey()).jwk, eab.keyId, eab.hmacKey) }), code('ACME_EAB_INVALID'), 'another key in the payload');
    await assert.rejects(h.acme.newAccount({ ...base, eab: await eabJws(k.jwk, 'eab-unknown', eab.hmacKey) }), code('ACME_EAB_INVALID'), 'unknown kid');
    const { account, created } = await h.acme.newAccount({ ...base, eab: await eabJws(k.jwk, eab.keyId, eab.hmacKey) });
    assert.equal(created, true);
    assert.equal(account.eabKeyId, eab.keyId);
    assert.equal((await store.eabKey(eab.keyId))?.accountId, account.id);
    const k2 = await accountKey();
    await assert.rejects(h.acme.newAccount({ ...base, jwk: k2.jwk, thumbprint: k2.thumbprint, eab: await eabJws(k2.jwk, eab.keyId, eab.hmacKey) }), code('ACME_EAB_INVALID'), 'used twice');
    // The key's names bound the account's orders.
    await assert.rejects(h.acme.newOrder(account.id, { identifiers: [dns('api.acme.internal')] }), code('ACME_REJECTED_IDENTIFIER'));
    await assert.rejects(h.acme.newOrder(account.id, { identifiers: [dns('db.eu.acme.internal')] }), code('ACME_REJECTED_IDENTIFIER'));
    const o = await h.acme.newOrder(account.id, { identifiers: [dns('api.eu.acme.internal')] });
    assert.equal(o.status, 'pending');

    const expiring = await createEabKey(store, { names: ['*.acme.internal'], now: h.now(), expiresAt: new Date(h.now().getTime() + 60_000) });
    h.advance(61_000);
    await assert.rejects(h.acme.newAccount({ ...base, jwk: k2.jwk, thumbprint: k2.thumbprint, eab: await eabJws(k2.jwk, expiring.keyId, expiring.hmacKey) }), code('ACME_EAB_INVALID'), 'expired');

    // Two accounts racing for one fresh key: one binds it.
    const fresh = await createEabKey(store, { names: ['*.acme.internal'], now: h.now() });
    const [x, y] = [await accountKey(), await accountKey()];
    const race = await Promise.allSettled([x, y].map(async (kk) => h.acme.newAccount({ ...base, jwk: kk.jwk, thumbprint: kk.thumbprint, eab: await eabJws(kk.jwk, fresh.keyId, fresh.hmacKey) })));
    assert.equal(race.filter((r) => r.status === 'fulfilled').length, 1);
    assert.ok(isMutualError((race.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason, 'ACME_EAB_INVALID'));
  } finally {
    await h.close();
  }
});

test('fail/account-keys-terms-and-contacts', async () => {
  const h = await makeHarness({ termsOfService: 'https://ca.acme.internal/terms' });
  try {
    const make = async (jwk: JsonWebKey, thumbprint: string, more: { contact?: string[]; termsOfServiceAgreed?: boolean } = {}) =>
      h.acme.newAccount({ jwk, thumbprint, contact: more.contact ?? [], termsOfServiceAgreed: more.termsOfServiceAgreed ?? true, accountUrl: ACCOUNT_URL });
    const p521 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey.export({ format: 'jwk' }) as JsonWebKey;
    await assert.rejects(make(p521, 'x'), code('ACME_BAD_PUBLIC_KEY'));
    const rsa1024 = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }) as JsonWebKey;
    await assert.rejects(make(rsa1024, 'x'), code('ACME_BAD_PUBLIC_KEY'));
    const priv = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }) as JsonWebKey;
    await assert.rejects(make(priv, 'x'), code('ACME_BAD_PUBLIC_KEY'));
    const k = await accountKey();
    await assert.rejects(make(k.jwk, 'not-its-thumbprint'), code('ACME_BAD_PUBLIC_KEY'));
    await assert.rejects(make(k.jwk, k.thumbprint, { termsOfServiceAgreed: false }), code('ACME_TERMS_NOT_AGREED'));
    await assert.rejects(make(k.jwk, k.thumbprint, { contact: ['tel:+15551234'] }), code('ACME_MALFORMED'));
    await assert.rejects(make(k.jwk, k.thumbprint, { contact: Array.from({ length: 11 }, (_, i) => `mailto:a${i}@acme.internal`) }), code('ACME_MALFORMED'));
    for (const kind of ['p384', 'ed25519', 'rsa2048'] as const) {
      const kk = await accountKey(kind);
      assert.equal((await make(kk.jwk, kk.thumbprint)).created, true, kind);
    }
    assert.equal(h.acme.meta().termsOfService, 'https://ca.acme.internal/terms');
  } finally {
    await h.close();
  }
});

test('fail/another-accounts-resources', async () => {
  const h = await makeHarness();
  try {
    const owner = await newAccount(h);
    const stranger = await newAccount(h);
    const id = await readyOrder(h, owner, ['mine.acme.internal']);
    const o = await h.acme.order(owner.id, id);
    await assert.rejects(h.acme.order(stranger.id, id), code('ACME_UNAUTHORIZED'));
    await assert.rejects(h.acme.authorization(stranger.id, o.authorizationIds[0]), code('ACME_UNAUTHORIZED'));
    await assert.rejects(h.acme.deactivateAuthorization(stranger.id, o.authorizationIds[0]), code('ACME_UNAUTHORIZED'));
    await assert.rejects(h.acme.finalize(stranger.id, id, csrFor(['mine.acme.internal'])), code('ACME_UNAUTHORIZED'));
    assert.equal(await inventoryCount(h), 0);
    const done = await h.acme.finalize(owner.id, id, csrFor(['mine.acme.internal']));
    await assert.rejects(h.acme.certificate(stranger.id, done.certificateId!, 0), code('ACME_UNAUTHORIZED'));
    await assert.rejects(h.acme.order(owner.id, 'no-such-order'), code('ACME_NOT_FOUND'));
    // Deactivating an authorization makes the orders still using it invalid.
    const next = await readyOrder(h, owner, ['mine.acme.internal']);
    await h.acme.deactivateAuthorization(owner.id, (await h.acme.order(owner.id, next)).authorizationIds[0]);
    assert.equal((await h.acme.order(owner.id, next)).status, 'invalid');
  } finally {
    await h.close();
  }
});
