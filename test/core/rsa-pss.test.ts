/**
 * RSASSA-PSS on what mutual verifies (issue 18): certificates (the SDK's path checks), CRLs and OCSP
 * responses signed with RSASSA-PSS verify with the hash, MGF1 hash and salt length their
 * parameters name (RFC 4055 3.1), as OpenSSL verifies them; PSS with SHA-1, or with a mask hash
 * other than its own, is refused; an algorithm identifier naming one key type never passes for
 * another. A software RSA key signs here (crypto.sign with PSS padding), so every parameter set can
 * be written; test/ca/hsm-pss.test.ts does the same end to end with a token key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { keyIdentifier, readSignature, spkiDer, SIGNATURE_ALGORITHMS, type SignatureAlgorithm } from '../../src/core/algorithms.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { createCertificateTemplate, newSerial, subjectFor } from '../../src/core/certificate-template.ts';
import { buildCrl } from '../../src/core/crl.ts';
import { parseCrl, verifyCrlSignature } from '../../src/core/crl-reader.ts';
import { derNull, expect, explicit, integer, oid, seq, Tag } from '../../src/core/der.ts';
import { createOcspResponder, encodeCertId, ocspIssuerHashes, parseOcspResponse, verifyOcspResponse } from '../../src/core/ocsp.ts';
import { OID } from '../../src/core/oids.ts';
import { toPem } from '../../src/core/pem.ts';
import type { Signer } from '../../src/core/signer.ts';
import { certificateProblem } from '../../src/sdk/peer-path.ts';
import { checkCertificate } from '../../src/monitor/check-certificate.ts';
import { tempDir } from '../helpers/test-ca.ts';
import { openssl, requireTool } from '../helpers/tools.ts';

const NOW = new Date('2026-12-01T00:00:00Z');
const DAY = 86_400_000;
const HASH_OIDS = { sha1: '1.3.14.3.2.26', sha256: OID.sha256, sha384: '2.16.840.1.101.3.4.2.2', sha512: '2.16.840.1.101.3.4.2.3' } as const;
type Hash = keyof typeof HASH_OIDS;

const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** RSASSA-PSS-params written out as DER wants: fields equal to their DEFAULT left out. */
function pssAlgorithm(hash: Hash, mgfHash: Hash, salt: number): Buffer {
  const hashId = (h: Hash) => seq(oid(HASH_OIDS[h]), derNull());
  return seq(oid(OID.rsassaPss), seq(
    ...(hash !== 'sha1' ? [explicit(0, hashId(hash))] : []),
    ...(mgfHash !== 'sha1' ? [explicit(1, seq(oid(OID.mgf1), hashId(mgfHash)))] : []),
    ...(salt !== 20 ? [explicit(2, integer(salt))] : []),
  ));
}

/** A Signer whose identifier says `der` and which signs PSS with `hash` and `salt` (or with the EC key). */
function signer(der: Buffer, sign: { hash: Hash; salt: number } | 'ec'): Signer {
  const algorithm: SignatureAlgorithm = { name: 'test', oid: OID.rsassaPss, hash: 'sha256', der };
  if (sign === 'ec') return { publicKey: ec.publicKey, algorithm, sign: (data) => crypto.sign('sha256', data, ec.privateKey) };
  return {
    publicKey: rsa.publicKey,
    algorithm,
    sign: (data) => crypto.sign(sign.hash, data, { key: rsa.privateKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: sign.salt }),
  };
}

/** A self-signed CA certificate, a CRL and an OCSP response (the CA answering for itself), all signed by `s`. */
async function signAll(s: Signer): Promise<{ cert: Buffer; crl: Buffer; ocsp: Buffer }> {
  const name = subjectFor('PSS Root', 'Acme');
  const keyId = keyIdentifier(spkiDer(s.publicKey));
  const cert = await createCertificateTemplate({ name, keyId, signer: s }, { role: 'root' })
    .sign({ serial: newSerial(), notBefore: NOW, notAfter: new Date(+NOW + 365 * DAY), subject: name, spki: spkiDer(s.publicKey) });
  const crl = await buildCrl({ issuerName: name, authorityKeyId: keyId, crlNumber: 1n, thisUpdate: NOW, nextUpdate: new Date(+NOW + DAY), entries: [], signer: s });
  const responder = createOcspResponder({ issuerCertDer: cert, responderCertDer: cert, signer: s });
  const single = responder.encodeSingle({ status: 'good', certId: encodeCertId('sha1', ocspIssuerHashes(cert), '0badc0de') }, NOW, new Date(+NOW + DAY));
  return { cert, crl, ocsp: await responder.sign([single], NOW) };
}

const CASES: { name: string; der: Buffer; sign: { hash: Hash; salt: number } | 'ec'; ok: boolean; scheme?: { hash: string; salt: number }; /** OpenSSL's verdict when it differs from ours. */ openssl?: boolean }[] = [
  { name: 'ok/SHA-256, MGF1-SHA-256, salt 32 (what token keys sign)', der: SIGNATURE_ALGORITHMS.rsassaPssSha256.der, sign: { hash: 'sha256', salt: 32 }, ok: true, scheme: { hash: 'sha256', salt: 32 } },
  { name: 'ok/SHA-384, MGF1-SHA-384, salt 48', der: pssAlgorithm('sha384', 'sha384', 48), sign: { hash: 'sha384', salt: 48 }, ok: true, scheme: { hash: 'sha384', salt: 48 } },
  { name: 'ok/SHA-512, MGF1-SHA-512, salt 64', der: pssAlgorithm('sha512', 'sha512', 64), sign: { hash: 'sha512', salt: 64 }, ok: true, scheme: { hash: 'sha512', salt: 64 } },
  { name: 'ok/SHA-256, salt 0', der: pssAlgorithm('sha256', 'sha256', 0), sign: { hash: 'sha256', salt: 0 }, ok: true, scheme: { hash: 'sha256', salt: 0 } },
  { name: 'ok/SHA-256 with salt 20 (the DEFAULT, left out)', der: pssAlgorithm('sha256', 'sha256', 20), sign: { hash: 'sha256', salt: 20 }, ok: true, scheme: { hash: 'sha256', salt: 20 } },
  // A valid signature that mutual refuses by policy (OpenSSL checks it, its security level judges the hash).
  { name: 'fail/SHA-1 (all DEFAULTs)', der: pssAlgorithm('sha1', 'sha1', 20), sign: { hash: 'sha1', salt: 20 }, ok: false, openssl: true },
  { name: 'fail/SHA-256 with MGF1-SHA-1', der: pssAlgorithm('sha256', 'sha1', 32), sign: { hash: 'sha256', salt: 32 }, ok: false },
  { name: 'fail/SHA-256 with MGF1-SHA-384', der: pssAlgorithm('sha256', 'sha384', 32), sign: { hash: 'sha256', salt: 32 }, ok: false },
  // The parameters are the ones accepted; the signature was made with another salt, so it fails.
  { name: 'fail/parameters say salt 32, signed with salt 20', der: SIGNATURE_ALGORITHMS.rsassaPssSha256.der, sign: { hash: 'sha256', salt: 20 }, ok: false, scheme: { hash: 'sha256', salt: 32 } },
  // An ECDSA signature under an RSASSA-PSS identifier: crypto.verify would ignore the padding for an EC key.
  { name: 'fail/an ECDSA key under the RSASSA-PSS identifier', der: SIGNATURE_ALGORITHMS.rsassaPssSha256.der, sign: 'ec', ok: false, scheme: { hash: 'sha256', salt: 32 } },
];

const dir = tempDir('mutual-pss-');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

for (const c of CASES) {
  test(c.name, async (t) => {
    const s = signer(c.der, c.sign);
    const { cert, crl, ocsp } = await signAll(s);

    const scheme = readSignature(c.der, expect(c.der, 0, Tag.SEQUENCE, c.der.length, 'AlgorithmIdentifier')).scheme;
    assert.deepEqual(scheme && { hash: scheme.hash, salt: scheme.pssSaltLength }, c.scheme);

    // The SDK's path check: a certificate signed with PSS is not "weak" unless its parameters are.
    const info = parseCertificate(cert);
    const problem = certificateProblem(info, 'the certificate');
    assert.equal(problem?.code, c.scheme ? undefined : 'CERT_WEAK');
    // The monitor warns of the same signatures (a self-signed root's is never checked: judged as issued).
    const issued = { ...info, issuerName: Buffer.from('30003000', 'hex') };
    const weak = checkCertificate(issued, { source: 'test', now: NOW, thresholdsDays: [], criticalDays: 0 }).filter((f) => f.kind === 'weak-signature');
    assert.equal(weak.length, c.scheme ? 0 : 1);
    const crlInfo = parseCrl(crl);
    assert.equal(verifyCrlSignature(crlInfo, s.publicKey, keyIdentifier(spkiDer(s.publicKey))), c.ok, 'CRL');
    const resp = parseOcspResponse(ocsp);
    assert.equal(verifyOcspResponse(resp, s.publicKey), c.ok, 'OCSP response');
    assert.equal(verifyOcspResponse(resp, crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey), false, 'another key');

    // OpenSSL agrees: the certificate's and the CRL's signatures verify exactly when ours do.
    if (c.sign === 'ec' || !requireTool(t, 'openssl')) return;
    assert.equal(new crypto.X509Certificate(cert).verify(s.publicKey), c.openssl ?? c.ok, 'X509Certificate.verify');
    const certFile = path.join(dir, `${c.name.replace(/\W+/g, '-')}.pem`);
    const crlFile = `${certFile}.crl`;
    fs.writeFileSync(certFile, toPem(cert, 'CERTIFICATE'));
    fs.writeFileSync(crlFile, toPem(crl, 'X509 CRL'));
    const v = openssl(['crl', '-in', crlFile, '-noout', '-verify', '-CAfile', certFile]);
    assert.equal(/verify OK/.test(v.stderr + v.stdout), c.openssl ?? c.ok, v.stderr + v.stdout);
  });
}
