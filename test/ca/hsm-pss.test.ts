/**
 * A CA whose intermediates sign with RSASSA-PSS token keys (`x-mutual-rsa=pss`, SoftHSM2), end to
 * end: the SDK's verifier accepts the leaves they issue and loads their CRLs (and refuses a revoked
 * leaf by them), an OCSP answer signed by the intermediate and one by its delegated responder
 * verify with mutual's reader, and OpenSSL agrees on the chain, the CRL and the OCSP answer.
 * Before PSS was verified (issue 18), the verifier answered CERT_WEAK for such a leaf and the CRL
 * and OCSP readers checked PKCS#1 padding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseCertificate } from '../../src/core/certificate.ts';
import { parseCrl, verifyCrlSignature } from '../../src/core/crl-reader.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { createOcspResponder, encodeCertId, ocspIssuerHashes, parseOcspResponse, verifyOcspResponse } from '../../src/core/ocsp.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { PeerVerifier } from '../../src/sdk/index.ts';
import type { FetchBytes } from '../../src/sdk/fetch-bytes.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { openssl, requireTool } from '../helpers/tools.ts';

const NOW = new Date('2026-12-01T00:00:00Z');

test('ok/intermediates on RSA-PSS token keys: SDK verifier, CRL and OCSP readers, OpenSSL', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'openssl')) return;
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: `${tok.tokenUri}&x-mutual-rsa=pss` }, keyTypes: { intermediate: 'rsa2048' }, now: NOW });
  t.after(async () => {
    await tc.close();
    await closeKeyStores();
  });
  const { ca, layout: l } = tc;
  assert.equal(ca.client.signer.algorithm.name, 'RSASSA-PSS');
  const clientCaDer = readPemOrDer(ca.client.pem, ['CERTIFICATE']);
  assert.equal(parseCertificate(clientCaDer).signatureScheme?.key, 'ec', 'the root (a file key, ECDSA) signed the intermediate');

  const leaf = await ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/orders'] }, actor: 'test', now: NOW });
  const leafInfo = parseCertificate(leaf.certificate);
  assert.equal(leafInfo.signatureScheme?.pssSaltLength, 32);
  await ca.writeCrl('client', NOW);
  const crlFile = path.join(l.caDir, 'client.crl');

  // The SDK: the CRL comes from the CA's folder through an injected fetch.
  const fetch: FetchBytes = async (url) => (url === 'http://crl.test/client.crl' ? { status: 200, body: fs.readFileSync(crlFile) } : { status: 404, body: Buffer.alloc(0) });
  const verifier = () => new PeerVerifier({ clientCas: ca.client.pem, roots: ca.rootPem, now: () => NOW, fetch, revocation: { ocsp: false, crlUrls: ['http://crl.test/client.crl'] } });
  const v1 = verifier();
  await v1.refresh();
  assert.equal(v1.status().find((x) => x.issuer.includes('Client CA'))?.fresh, true, 'the PSS-signed CRL was loaded');
  const who = await v1.verify({ leaf: leaf.certificate, authorized: true });
  assert.equal(who.spiffeId, 'spiffe://acme.internal/prod/orders');

  const crl = parseCrl(fs.readFileSync(crlFile));
  assert.equal(crl.signatureScheme?.pssSaltLength, 32);
  assert.ok(verifyCrlSignature(crl, ca.client.signer.publicKey, Buffer.from(ca.client.keyId, 'hex')));

  // OpenSSL: the chain, and the CRL.
  const root = tc.file('root.pem', ca.rootPem);
  const inter = tc.file('client-ca.pem', ca.client.pem);
  const leafFile = tc.file('leaf.pem', leaf.certificatePem);
  const at = String(Math.floor(+NOW / 1000) + 60);
  const v = openssl(['verify', '-x509_strict', '-attime', at, '-purpose', 'sslclient', '-CAfile', root, '-untrusted', inter, leafFile]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  const c = openssl(['crl', '-in', crlFile, '-inform', 'DER', '-noout', '-CAfile', inter]);
  assert.match(c.stdout + c.stderr, /verify OK/);

  // OCSP: an answer the intermediate signs itself, and its delegated responder's certificate (PSS-signed).
  const certId = encodeCertId('sha1', ocspIssuerHashes(clientCaDer), leaf.serial);
  const direct = createOcspResponder({ issuerCertDer: clientCaDer, responderCertDer: clientCaDer, signer: ca.client.signer });
  const answer = await direct.sign([direct.encodeSingle({ status: 'good', certId }, NOW, new Date(+NOW + 3_600_000))], NOW);
  const parsed = parseOcspResponse(answer);
  assert.equal(parsed.status === 'successful' && parsed.signatureScheme?.pssSaltLength, 32);
  assert.ok(verifyOcspResponse(parsed, ca.client.signer.publicKey));
  const respFile = tc.file('resp.der', answer);
  const o = openssl(['ocsp', '-respin', respFile, '-issuer', inter, '-CAfile', root, '-attime', at, '-resp_text']);
  assert.match(o.stdout + o.stderr, /Response verify OK/, o.stdout + o.stderr);
  const delegated = await ca.issueOcspResponder(ca.client, 3600, NOW);
  try {
    assert.ok(new crypto.X509Certificate(delegated.certificate).verify(ca.client.signer.publicKey));
    assert.equal(parseCertificate(delegated.certificate).signatureScheme?.pssSaltLength, 32);
  } finally {
    await delegated.signer.release?.();
  }

  // Revoked: the next CRL, PSS-signed, refuses the leaf in a new verifier.
  await ca.revoke({ certificate: leaf.certificatePem, reason: 'keyCompromise', now: NOW });
  const v2 = verifier();
  await v2.refresh();
  await assert.rejects(async () => v2.verify({ leaf: leaf.certificate, authorized: true }), (e) => isMutualError(e, 'CERT_REVOKED'));
});
