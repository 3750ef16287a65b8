/**
 * The ACME lifecycle end to end on a real CA (SQLite) with a real http-01 responder: account,
 * order, challenge validated in the background, finalize through the authority's pipeline (the
 * certificate verified by `openssl verify -x509_strict -purpose sslserver`), download, renewal
 * information, revocation, key rollover, nonces and cleanup.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { parseCertificate } from '../../src/core/certificate.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { certIdOf } from '../../src/ca/acme/renewal-window.ts';
import { accountKey, ACCOUNT_URL, csrFor, inventoryCount, makeHarness, newAccount, opensslVerify, readyOrder } from './harness.ts';

const HOUR = 3_600_000;

test('ok/account-order-http01-finalize-download-verify-renewalinfo-revoke', async () => {
  const h = await makeHarness();
  try {
    const acct = await newAccount(h);
    const again = await h.acme.newAccount({ jwk: acct.jwk, thumbprint: acct.thumbprint, contact: [], termsOfServiceAgreed: true, accountUrl: ACCOUNT_URL });
    assert.equal(again.created, false, 'the same key finds the same account');
    assert.equal(again.account.id, acct.id);
    const order = await h.acme.newOrder(acct.id, { identifiers: [{ type: 'dns', value: 'API.eu.acme.internal.' }, { type: 'ip', value: '127.0.0.1' }] });
    assert.equal(order.status, 'pending');
    assert.deepEqual(order.identifiers, [{ type: 'dns', value: 'api.eu.acme.internal' }, { type: 'ip', value: '127.0.0.1' }], 'lowercased, no trailing dot');
    assert.equal(order.authorizationIds.length, 2);
    await assert.rejects(h.acme.finalize(acct.id, order.id, csrFor(['api.eu.acme.internal'], ['127.0.0.1'])), (e) => isMutualError(e, 'ACME_ORDER_NOT_READY'));
    const readyId = await readyOrder(h, acct, ['api.eu.acme.internal'], ['127.0.0.1']);
    assert.equal(readyId === order.id, false, 'a second order');
    const second = await h.acme.order(acct.id, readyId);
    assert.equal(second.status, 'ready');
    assert.deepEqual(second.authorizationIds, order.authorizationIds, 'the pending authorizations of the first order were reused');
    assert.equal((await h.acme.order(acct.id, order.id)).status, 'ready', 'the first order is ready too: same authorizations');
    const a = await h.acme.authorization(acct.id, order.authorizationIds[0]);
    assert.equal(a.status, 'valid');
    assert.ok(a.challenges[0].validated instanceof Date);

    const before = await inventoryCount(h);
    const done = await h.acme.finalize(acct.id, readyId, csrFor(['api.eu.acme.internal'], ['127.0.0.1']));
    assert.equal(done.status, 'valid');
    assert.ok(done.certificateId);
    assert.equal(await inventoryCount(h), before + 1);
    const stored = await h.tc.ca.getCertificate(done.certificateId!);
    assert.equal(stored?.issuedBy, `acme:${acct.id}`);
    const chain = await h.acme.certificate(acct.id, done.certificateId!, 0);
    assert.equal(chain.alternates, 0);
    const v = opensslVerify(h.tc, chain.pem, h.now());
    assert.equal(v.status, 0, v.output);
    const leaf = parseCertificate(readPemOrDer(chain.pem, ['CERTIFICATE']));
    assert.deepEqual(leaf.names, { dns: ['api.eu.acme.internal'], ip: ['127.0.0.1'], uri: [] });
    assert.equal(leaf.notAfter.getTime() - h.now().getTime(), 24 * HOUR, 'acme.certificateLifetime default 24h');
    await assert.rejects(h.acme.certificate(acct.id, done.certificateId!, 1), (e) => isMutualError(e, 'ACME_NOT_FOUND'));

    const certId = certIdOf(stored!.issuerKeyId, stored!.serial);
    const ri = await h.acme.renewalInfo(certId);
    assert.equal(ri.suggestedWindow.start.getTime(), leaf.notBefore.getTime() + Math.round((leaf.notAfter.getTime() - leaf.notBefore.getTime()) * 2 / 3));
    assert.ok(ri.suggestedWindow.end < leaf.notAfter && ri.suggestedWindow.end > ri.suggestedWindow.start);
    await assert.rejects(h.acme.renewalInfo(`${certId.split('.')[0]}.AQID`), (e) => isMutualError(e, 'ACME_NOT_FOUND'));
    await assert.rejects(h.acme.renewalInfo('not-an-id'), (e) => isMutualError(e, 'ACME_MALFORMED'));

    await h.acme.revoke({ certificateDer: leaf.der, reason: 4, by: { accountId: acct.id } });
    assert.equal((await h.tc.ca.getCertificate(done.certificateId!))?.status, 'revoked');
    const after = await h.acme.renewalInfo(certId);
    assert.ok(after.suggestedWindow.end <= h.now(), 'a revoked certificate: renew now');
    await assert.rejects(h.acme.revoke({ certificateDer: leaf.der, by: { accountId: acct.id } }), (e) => isMutualError(e, 'CERT_ALREADY_REVOKED'));
  } finally {
    await h.close();
  }
});

test('ok/revoke-by-certificate-key-and-by-an-account-holding-the-names', async () => {
  const h = await makeHarness();
  try {
    const owner = await newAccount(h);
    const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issue = async () => {
      const id = await readyOrder(h, owner, ['web.acme.internal']);
      const o = await h.acme.finalize(owner.id, id, csrFor(['web.acme.internal'], [], key.privateKey));
      return (await h.tc.ca.getCertificate(o.certificateId!))!;
    };
    const first = await issue();
    const stranger = await newAccount(h);
    await assert.rejects(h.acme.revoke({ certificateDer: first.der, by: { accountId: stranger.id } }), (e) => isMutualError(e, 'ACME_UNAUTHORIZED'));
    const otherKey = (await accountKey()).jwk;
    await assert.rejects(h.acme.revoke({ certificateDer: first.der, by: { jwk: otherKey } }), (e) => isMutualError(e, 'ACME_UNAUTHORIZED'));
    await assert.rejects(h.acme.revoke({ certificateDer: first.der, reason: 6, by: { accountId: owner.id } }), (e) => isMutualError(e, 'ACME_BAD_REVOCATION_REASON'));
    assert.equal((await h.tc.ca.getCertificate(first.serial))?.status, 'valid', 'nothing revoked by the refusals');
    await h.acme.revoke({ certificateDer: first.der, reason: 1, by: { jwk: key.publicKey.export({ format: 'jwk' }) as JsonWebKey } });
    assert.equal((await h.tc.ca.getCertificate(first.serial))?.reason, 'keyCompromise');

    const second = await issue();
    // The stranger proves control of the name: it may revoke the certificate for it.
    await readyOrder(h, stranger, ['web.acme.internal']);
    await h.acme.revoke({ certificateDer: second.der, by: { accountId: stranger.id } });
    assert.equal((await h.tc.ca.getCertificate(second.serial))?.status, 'revoked');
  } finally {
    await h.close();
  }
});

test('fail/challenge-answered-wrong-makes-authorization-and-order-invalid', async () => {
  const h = await makeHarness();
  try {
    const acct = await newAccount(h);
    const order = await h.acme.newOrder(acct.id, { identifiers: [{ type: 'dns', value: 'bad.acme.internal' }] });
    const a = await h.acme.authorization(acct.id, order.authorizationIds[0]);
    const c = a.challenges[0];
    const seen: { challengeId: string; valid: boolean; error?: { code: string } }[] = [];
    const listen = (m: unknown) => seen.push(m as (typeof seen)[number]);
    diagnostics.subscribe('mutual:acme:validated', listen);
    h.responder.answers.set(c.token, 'something else');
    const r = await h.acme.respondChallenge(acct.id, c.id);
    assert.equal(r.challenge.status, 'processing');
    assert.equal(r.authorizationId, a.id);
    const again = await h.acme.respondChallenge(acct.id, c.id);
    assert.ok(['processing', 'invalid'].includes(again.challenge.status), 'idempotent while processing');
    await h.acme.settle();
    diagnostics.unsubscribe('mutual:acme:validated', listen);
    assert.deepEqual(seen.map((m) => [m.challengeId, m.valid, m.error?.code]), [[c.id, false, 'ACME_INCORRECT_RESPONSE']], 'one validation, announced once');
    const after = await h.acme.authorization(acct.id, a.id);
    assert.equal(after.status, 'invalid');
    assert.equal(after.challenges[0].error?.code, 'ACME_INCORRECT_RESPONSE');
    assert.match(after.challenges[0].error!.detail, /127\.0\.0\.1.*expected.*key authorization.*"something else"/, 'what was fetched, from where, what was expected');
    const o = await h.acme.order(acct.id, order.id);
    assert.equal(o.status, 'invalid');
    assert.equal(o.error?.code, 'ACME_INCORRECT_RESPONSE');
    await assert.rejects(h.acme.finalize(acct.id, order.id, csrFor(['bad.acme.internal'])), (e) => isMutualError(e, 'ACME_ORDER_NOT_READY'));
    await assert.rejects(h.acme.respondChallenge(acct.id, `${a.id}9`), (e) => isMutualError(e, 'ACME_NOT_FOUND'));
    assert.equal(await inventoryCount(h), 0, 'nothing issued');
  } finally {
    await h.close();
  }
});

test('ok/key-rollover-and-deactivation', async () => {
  const h = await makeHarness();
  try {
    const a = await newAccount(h);
    const b = await newAccount(h);
    const next = await accountKey('ed25519');
    await assert.rejects(h.acme.changeKey(a.id, b.jwk, b.thumbprint), (e) => isMutualError(e, 'ACME_KEY_IN_USE'));
    const rolled = await h.acme.changeKey(a.id, next.jwk, next.thumbprint);
    assert.equal(rolled.thumbprint, next.thumbprint);
    assert.equal(await h.acme.accountByKey(a.thumbprint), undefined, 'the old key finds no account');
    assert.equal((await h.acme.accountByKey(next.thumbprint))?.id, a.id);
    const updated = await h.acme.updateAccount(a.id, { contact: ['mailto:new@acme.internal'] });
    assert.deepEqual(updated.contact, ['mailto:new@acme.internal']);
    const gone = await h.acme.updateAccount(a.id, { status: 'deactivated' });
    assert.equal(gone.status, 'deactivated');
    await assert.rejects(h.acme.newOrder(a.id, { identifiers: [{ type: 'dns', value: 'x.acme.internal' }] }), (e) => isMutualError(e, 'ACME_ACCOUNT_DEACTIVATED'));
    await assert.rejects(h.acme.updateAccount(a.id, { contact: [] }), (e) => isMutualError(e, 'ACME_ACCOUNT_DEACTIVATED'));
  } finally {
    await h.close();
  }
});

test('ok/nonces-are-spent-once-and-expire', async () => {
  const h = await makeHarness();
  try {
    const n = await h.acme.newNonce();
    assert.equal(await h.acme.spendNonce(n), true);
    assert.equal(await h.acme.spendNonce(n), false, 'spent once');
    const forged = Buffer.from(n, 'base64url');
    forged[0] ^= 1;
    assert.equal(await h.acme.spendNonce(forged.toString('base64url')), false, 'a changed nonce fails its HMAC');
    assert.equal(await h.acme.spendNonce('short'), false);
    const old = await h.acme.newNonce();
    h.advance(5 * 60_000 + 1000);
    assert.equal(await h.acme.spendNonce(old), false, 'expired after 5 minutes');
  } finally {
    await h.close();
  }
});

test('ok/expire-removes-abandoned-orders-and-authorizations-only', async () => {
  const h = await makeHarness();
  try {
    const acct = await newAccount(h);
    const abandoned = await h.acme.newOrder(acct.id, { identifiers: [{ type: 'dns', value: 'gone.acme.internal' }] });
    const readyId = await readyOrder(h, acct, ['kept.acme.internal']);
    const valid = await h.acme.finalize(acct.id, readyId, csrFor(['kept.acme.internal']));
    h.advance(2 * HOUR);
    assert.equal((await h.acme.order(acct.id, abandoned.id)).status, 'invalid', 'past its expiry an order reads as invalid');
    assert.equal((await h.acme.authorization(acct.id, abandoned.authorizationIds[0])).status, 'pending', 'authorizations live 8h');
    h.advance(8 * HOUR);
    assert.equal((await h.acme.authorization(acct.id, abandoned.authorizationIds[0])).status, 'expired');
    await h.acme.expire(h.now());
    await assert.rejects(h.acme.order(acct.id, abandoned.id), (e) => isMutualError(e, 'ACME_NOT_FOUND'));
    await assert.rejects(h.acme.authorization(acct.id, abandoned.authorizationIds[0]), (e) => isMutualError(e, 'ACME_NOT_FOUND'));
    assert.equal((await h.acme.order(acct.id, valid.id)).status, 'valid', 'a valid order stays');
    assert.deepEqual(await h.acme.orders(acct.id), [valid.id]);
  } finally {
    await h.close();
  }
});
