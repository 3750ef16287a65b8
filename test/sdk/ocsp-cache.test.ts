/**
 * The verifier's OCSP fallback on its own (sdk/ocsp-cache.ts): answers signed by the client CA
 * (core/ocsp.ts's responder, the one `mutual serve` uses) are cached until their nextUpdate; a
 * revocation calls the verifier back; an answer signed by a look-alike CA, a stale one, an
 * "unknown" one and an HTTP error cache nothing and are published as failures. The fetcher is
 * scripted so the answers can be wrong on purpose; the real responder over HTTP is
 * test/sdk/verifier.test.ts's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { X509Certificate } from 'node:crypto';
import { makePki, type Pki, type TestCaCert } from './fixtures.ts';
import { OcspCache, throwIfRevokedByOcsp } from '../../src/sdk/ocsp-cache.ts';
import type { FetchBytes } from '../../src/sdk/fetch-bytes.ts';
import { trustedCa, type TrustedCa } from '../../src/sdk/peer-path.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { createOcspResponder, encodeCertId, type OcspCertStatus } from '../../src/core/ocsp.ts';
import type { Signer } from '../../src/core/signer.ts';
import { isMutualError } from '../../src/core/errors.ts';

const HOUR = 3_600_000;
const SERIAL = '4a0102030405060708090a0b0c0d0e0f';
let pki: Pki;
let lookAlike: TestCaCert;
let NOW: Date;
let ca: TrustedCa;

before(async () => {
  pki = await makePki();
  NOW = new Date(pki.tc.ca.client.info.notBefore.getTime() + HOUR);
  lookAlike = await pki.clientCaCopy({ key: 'new', signedBy: 'self', notBefore: new Date(NOW.getTime() - HOUR), notAfter: new Date(NOW.getTime() + 365 * 24 * HOUR) });
  ca = trustedCa(parseCertificate(new X509Certificate(pki.clientCa).raw), []);
});
after(() => pki.close());

/** A fetcher answering every query with one OCSP answer about SERIAL, signed as told. */
function answering(status: OcspCertStatus, o: { thisUpdate?: Date; nextUpdate?: Date; by?: { der: Buffer; signer: Signer }; http?: number } = {}): FetchBytes {
  return async () => {
    if (o.http) return { status: o.http, body: Buffer.alloc(0) };
    const by = o.by ?? { der: ca.info.der, signer: pki.tc.ca.client.template.issuer.signer };
    const responder = createOcspResponder({ issuerCertDer: by.der, responderCertDer: by.der, signer: by.signer });
    const single = responder.encodeSingle({ ...status, certId: encodeCertId('sha1', ca.ocspHashes, SERIAL) }, o.thisUpdate ?? NOW, o.nextUpdate ?? new Date(NOW.getTime() + HOUR));
    return { status: 200, body: await responder.sign([single], NOW) };
  };
}

/** Queries once with `fetch`; returns the cache, how often it called back, and the failures published. */
async function queryWith(fetch: FetchBytes) {
  let revoked = 0;
  const cache = new OcspCache({ fetch, now: () => NOW, refreshMs: 60_000, onRevoked: () => revoked++ });
  const failures: unknown[] = [];
  const onFailed = (m: unknown) => failures.push(m);
  diagnostics.subscribe('mutual:verifier:crl-failed', onFailed);
  try {
    await cache.query(SERIAL, ca, 'http://127.0.0.1:1/ocsp');
  } finally {
    diagnostics.unsubscribe('mutual:verifier:crl-failed', onFailed);
  }
  return { cache, revoked, failures };
}

test('ok/a good answer is cached until its nextUpdate', async () => {
  const { cache, revoked, failures } = await queryWith(answering({ status: 'good' }));
  assert.deepEqual(cache.answer(SERIAL, NOW.getTime()), { until: NOW.getTime() + HOUR });
  assert.equal(cache.answer(SERIAL, NOW.getTime() + HOUR), undefined, 'stale at nextUpdate');
  assert.equal(cache.isRevoked(SERIAL), false);
  assert.equal(revoked, 0);
  assert.deepEqual(failures, []);
});

test('ok/a revoked answer is cached, calls the verifier back, and is CERT_REVOKED', async () => {
  const at = new Date(NOW.getTime() - HOUR);
  const { cache, revoked } = await queryWith(answering({ status: 'revoked', revokedAt: at, reason: 1 }));
  const a = cache.answer(SERIAL, NOW.getTime());
  assert.equal(a?.revoked?.at.getTime(), at.getTime());
  assert.equal(cache.isRevoked(SERIAL), true);
  assert.equal(revoked, 1);
  const info = { ...parseCertificate(new X509Certificate(pki.clientCa).raw), serial: SERIAL };
  assert.throws(() => throwIfRevokedByOcsp(a!.revoked, info), (e) => isMutualError(e, 'CERT_REVOKED'));
});

/** Made when the test runs (the PKI is made in before()). */
const failing: [string, () => FetchBytes][] = [
  ['fail/an answer signed by a look-alike CA', () => answering({ status: 'good' }, { by: { der: lookAlike.der, signer: lookAlike.issuer!.signer } })],
  ['fail/a stale answer', () => answering({ status: 'good' }, { thisUpdate: new Date(NOW.getTime() - 2 * HOUR), nextUpdate: new Date(NOW.getTime() - HOUR) })],
  ['fail/an answer from the future', () => answering({ status: 'good' }, { thisUpdate: new Date(NOW.getTime() + HOUR), nextUpdate: new Date(NOW.getTime() + 2 * HOUR) })],
  ['fail/an "unknown" answer', () => answering({ status: 'unknown' })],
  ['fail/an HTTP error', () => answering({ status: 'good' }, { http: 500 })],
];
for (const [name, fetch] of failing) {
  test(`${name} caches nothing and is published`, async () => {
    const { cache, revoked, failures } = await queryWith(fetch());
    assert.equal(cache.answer(SERIAL, NOW.getTime()), undefined);
    assert.equal(revoked, 0);
    assert.equal(failures.length, 1);
    assert.equal((failures[0] as { ocsp?: boolean }).ocsp, true);
  });
}
