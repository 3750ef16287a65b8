/**
 * Makes the fuzz corpus of test/core/fuzz.test.ts: DER and PEM objects of every kind the readers of
 * src/core take, from an ephemeral test CA and from OpenSSL. Only public structures are written
 * (CSRs, certificates, CRLs, OCSP requests and responses, PEM bundles); every private key lives in
 * memory or in a temp folder that is removed. Run it again only to change the corpus:
 *
 *   npx node test/fuzz-corpus/make-corpus.ts
 *
 * The corpus is kept in the repository so that a failure found by the fuzz test reproduces from
 * its seed on every machine.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestCa } from '../helpers/test-ca.ts';
import { openssl } from '../helpers/tools.ts';
import { buildCsr, parseCsr } from '../../src/core/csr.ts';
import { createOcspResponder, encodeCertId, ocspIssuerHashes, OCSP_MALFORMED, OCSP_OID } from '../../src/core/ocsp.ts';
import { explicit, floorSeconds, oid, octetString, seq } from '../../src/core/der.ts';
import { readPemOrDer, toPem } from '../../src/core/pem.ts';

const NOW = floorSeconds(new Date('2027-03-01T09:30:00Z'));
const HOUR = 3_600_000;
const out = path.join(import.meta.dirname, 'der');
fs.mkdirSync(out, { recursive: true });
const put = (name: string, data: string | Buffer) => fs.writeFileSync(path.join(out, name), data);
const names = (n: { dns?: string[]; ip?: string[]; uri?: string[] }) => ({ dns: [], ip: [], uri: [], ...n });

const tc = await makeTestCa({ now: NOW });
try {
  const { ca } = tc;
  // CSRs: the project's builder (P-256, Ed25519, RSA) and OpenSSL's.
  const p256 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  put('csr-p256-server.der', buildCsr({ privateKey: p256, commonName: 'api.acme.internal', names: names({ dns: ['api.acme.internal', 'localhost'], ip: ['127.0.0.1', '::1'] }) }));
  put('csr-ed25519-client.der', buildCsr({ privateKey: crypto.generateKeyPairSync('ed25519').privateKey, commonName: 'payments', names: names({ uri: ['spiffe://acme.internal/prod/payments'] }) }));
  put('csr-rsa2048-ca.der', buildCsr({ privateKey: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, commonName: 'Acme Server CA', ca: true }));
  // The keys of those CSRs alone, for the SubjectPublicKeyInfo reader.
  for (const [csrName, spkiName] of [['csr-p256-server.der', 'spki-p256.der'], ['csr-ed25519-client.der', 'spki-ed25519.der'], ['csr-rsa2048-ca.der', 'spki-rsa2048.der']]) {
    put(spkiName, parseCsr(fs.readFileSync(path.join(out, csrName))).spki);
  }
  const key = tc.file('openssl.key', '');
  fs.rmSync(key);
  const r = openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', key, '-subj', '/CN=api/O=Acme',
    '-addext', 'subjectAltName=DNS:api.acme.internal,IP:10.1.2.3', '-addext', 'extendedKeyUsage=serverAuth', '-addext', 'keyUsage=critical,digitalSignature']);
  if (r.status !== 0) throw new Error(r.stderr);
  put('csr-openssl-p384.pem', r.stdout);

  // Certificates: root, intermediates (name constraints), a server and a client leaf, an OCSP responder.
  const server = await ca.issue({ role: 'server', names: names({ dns: ['api.acme.internal'], ip: ['127.0.0.1'] }), now: NOW });
  const client = await ca.issue({ role: 'client', names: names({ uri: ['spiffe://acme.internal/prod/payments'] }), now: NOW });
  put('cert-server-leaf.der', server.certificate);
  put('cert-client-leaf.der', client.certificate);
  put('cert-client-ca.der', readPemOrDer(ca.client.pem, ['CERTIFICATE']));
  put('cert-root.der', readPemOrDer(ca.rootPem, ['CERTIFICATE']));
  put('bundle-fullchain.pem', server.fullchainPem + ca.rootPem);
  // Self-signed by OpenSSL with RSA: PKCS#1 v1.5 (NULL parameters) and RSASSA-PSS (RFC 4055 parameters).
  for (const [name, extra] of [['cert-openssl-rsa.der', []], ['cert-openssl-rsa-pss.der', ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:digest']]] as const) {
    const k = path.join(tc.dir, `${name}.key`);
    const x = openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', k, '-subj', '/CN=other', '-days', '30', '-sha256', ...extra, '-outform', 'DER', '-out', path.join(out, name)]);
    if (x.status !== 0) throw new Error(x.stderr);
    fs.rmSync(k);
  }

  // A CRL with entries and reasons.
  const revoked = [];
  for (let i = 0; i < 3; i++) revoked.push(await ca.issue({ role: 'client', names: names({ uri: [`spiffe://acme.internal/prod/r${i}`] }), now: NOW }));
  await ca.revoke({ serial: revoked[0].serial, reason: 'keyCompromise', now: NOW });
  await ca.revoke({ serial: revoked[1].serial, reason: 'superseded', now: NOW });
  await ca.revoke({ serial: revoked[2].serial, now: NOW });
  const crl = await ca.buildCrl('client', NOW);
  put('crl-client.der', crl);
  put('crl-client.pem', toPem(crl, 'X509 CRL'));

  // OCSP: a request from OpenSSL (nonce, SHA-1 CertID), one of our own (SHA-256, two CertIDs), and responses.
  const issuerDer = readPemOrDer(ca.client.pem, ['CERTIFICATE']);
  const reqOut = tc.file('req.der', '');
  const o = openssl(['ocsp', '-issuer', tc.file('client-ca.pem', ca.client.pem), '-cert', tc.file('leaf.pem', client.certificatePem), '-reqout', reqOut]);
  if (o.status !== 0) throw new Error(o.stderr);
  put('ocsp-request-openssl.der', fs.readFileSync(reqOut));
  const hashes = ocspIssuerHashes(issuerDer);
  const ids = [encodeCertId('sha256', hashes, client.serial), encodeCertId('sha256', hashes, revoked[0].serial)];
  const nonce = explicit(2, seq(seq(oid(OCSP_OID.nonce), octetString(octetString(Buffer.alloc(16, 7))))));
  put('ocsp-request-two.der', seq(seq(seq(...ids.map((id) => seq(id))), nonce)));
  const resp = await ca.issueOcspResponder(ca.client, 86_400, NOW);
  const responder = createOcspResponder({ issuerCertDer: issuerDer, responderCertDer: resp.certificate, signer: resp.signer });
  const next = new Date(NOW.getTime() + HOUR);
  const singles = [
    responder.encodeSingle({ status: 'good', certId: ids[0] }, NOW, next),
    responder.encodeSingle({ status: 'revoked', revokedAt: NOW, reason: 'keyCompromise', certId: ids[1] }, NOW, next),
    responder.encodeSingle({ status: 'unknown', certId: encodeCertId('sha1', hashes, '0102') }, NOW, next),
  ];
  put('ocsp-response.der', await responder.sign(singles, NOW, Buffer.alloc(16, 7)));
  put('ocsp-response-malformed-request.der', OCSP_MALFORMED);
} finally {
  await tc.close();
}
console.log(`corpus written to ${out}:`, fs.readdirSync(out).join(' '));
