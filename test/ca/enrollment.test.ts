/**
 * Enrollment (src/ca/enrollment.ts) and the token spend it hands to the authority: the CSR is
 * parsed once, by the caller, and issued as is; the token is spent by the authority in the store
 * after every check and before signing: a replay gets TOKEN_REPLAYED with no second certificate,
 * and a request refused by a check leaves the token unspent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Enrollment } from '../../src/ca/enrollment.ts';
import { loadTokenKey } from '../../src/ca/tokens.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { buildCsr, parseCsr } from '../../src/core/csr.ts';
import { isMutualError } from '../../src/core/errors.ts';
import type { SubjectAltNames } from '../../src/core/names.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';

// Near the wall clock: the store forgets spent tokens a day past their expiry by its own clock.
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const ID = 'spiffe://acme.internal/prod/billing';
const names = (n: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...n });
const csrFor = (n: SubjectAltNames) => parseCsr(buildCsr({ privateKey: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, commonName: 'x', names: n }));
const count = async (tc: TestCa) => (await tc.ca.list({ role: 'client', limit: 1000 })).length;

async function setup(): Promise<{ tc: TestCa; e: Enrollment }> {
  const tc = await makeTestCa({ now: NOW });
  return { tc, e: new Enrollment({ ca: tc.ca, tokenKey: loadTokenKey(tc.layout.keysDir, TEST_PASSPHRASE), now: () => NOW }) };
}

test('ok/parsed-csr-is-issued-and-the-token-spent-once', async () => {
  const { tc, e } = await setup();
  try {
    const t = await e.mint({ names: names({ uri: [ID] }), ttlSeconds: 600, certificateTtlSeconds: 3600, actor: 'admin' });
    const csr = csrFor(names({ uri: [ID] }));
    const r = await e.enroll(await e.verify(t.token), csr);
    const info = parseCertificate(r.certificate);
    assert.deepEqual(info.spki, csr.spki, 'the parsed CSR\'s key');
    assert.equal(r.identity, ID);
    assert.equal(info.notAfter.getTime() - NOW.getTime(), 3600_000, 'the lifetime the token carries');
    const before = await count(tc);
    await assert.rejects(e.enroll(await e.verify(t.token), csrFor(names({ uri: [ID] }))), (err) => isMutualError(err, 'TOKEN_REPLAYED'));
    assert.equal(await count(tc), before, 'no second certificate for one token');
  } finally {
    await tc.close();
  }
});

test('ok/a-refused-request-leaves-the-token-unspent', async () => {
  const { tc, e } = await setup();
  try {
    const t = await e.mint({ names: names({ uri: [ID] }), ttlSeconds: 600, actor: 'admin' });
    const claims = await e.verify(t.token);
    // A CSR asking for a CA certificate fails the authority's checks, after the names matched.
    const bad = parseCsr(buildCsr({ privateKey: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, commonName: 'x', names: names({ uri: [ID] }), ca: true }));
    await assert.rejects(e.enroll(claims, bad), (err) => isMutualError(err, 'CSR_FORBIDDEN_EXTENSION'));
    await assert.rejects(e.enroll(claims, csrFor(names({ uri: ['spiffe://acme.internal/prod/other'] }))), (err) => isMutualError(err, 'TOKEN_NAME_MISMATCH'));
    const r = await e.enroll(claims, csrFor(names({})));
    assert.equal(r.identity, ID, 'a CSR naming nothing gets the token\'s names');
  } finally {
    await tc.close();
  }
});

test('fail/mint-checks-policy-and-lifetime', async () => {
  const { tc, e } = await setup();
  try {
    await assert.rejects(e.mint({ names: names({ dns: ['api.elsewhere.example'] }), ttlSeconds: 600, actor: 'admin' }), (err) => isMutualError(err, 'POLICY_NAME_NOT_ALLOWED'));
    await assert.rejects(e.mint({ names: names({ uri: [ID] }), ttlSeconds: 600, certificateTtlSeconds: 10, actor: 'admin' }), (err) => isMutualError(err, 'POLICY_VALIDITY_TOO_SHORT'));
  } finally {
    await tc.close();
  }
});

test('fail/authority-refuses-a-spent-token', async () => {
  const tc = await makeTestCa({ now: NOW });
  try {
    const spendToken = { jti: 'jti-1', expiresAt: new Date(NOW.getTime() + 600_000), actor: 'token:admin' };
    await tc.ca.issue({ role: 'client', names: names({ uri: [ID] }), spendToken });
    const before = await count(tc);
    await assert.rejects(tc.ca.issue({ role: 'client', names: names({ uri: [ID] }), spendToken }), (err) => isMutualError(err, 'TOKEN_REPLAYED'));
    assert.equal(await count(tc), before);
  } finally {
    await tc.close();
  }
});
