/**
 * AlgorithmIdentifiers are read strictly wherever mutual reads a signature algorithm (issue 13):
 * ECDSA and EdDSA without parameters (RFC 5758 3.2, RFC 8410 3), RSA PKCS#1 v1.5 with exactly
 * NULL (RFC 4055 5, BR 7.1.3.2), RSASSA-PSS with well-formed RSASSA-PSS-params (RFC 4055 3.1).
 * The signatureAlgorithm of a CSR, certificate, CRL or OCSP response sits outside the signed bytes,
 * so a reader that skips it lets anything through there. Fixtures are the fuzz corpus (public
 * structures made by mutual and by OpenSSL), edited here.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { readSignatureAlgorithm, readSpki } from '../../src/core/algorithms.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { parseCrl } from '../../src/core/crl-reader.ts';
import { parseCsr } from '../../src/core/csr.ts';
import { children, derNull, elementBytes, explicit, integer, oid, readElement, readOid, seq, tlv, type DerElement } from '../../src/core/der.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { OID } from '../../src/core/oids.ts';
import { parseOcspResponse } from '../../src/core/ocsp.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { parseCaseTests, type ParseCase } from '../helpers/parse-cases.ts';

const CORPUS = path.join(import.meta.dirname, '..', 'fuzz-corpus', 'der');
const corpus = (name: string): Buffer => fs.readFileSync(path.join(CORPUS, name));

const RSA_PSS = '1.2.840.113549.1.1.10';
const MGF1 = '1.2.840.113549.1.1.8';
const SHA256 = '2.16.840.1.101.3.4.2.1';
const SHA1 = '1.3.14.3.2.26';
const hashAlg = (h: string, withNull = true) => (withNull ? seq(oid(h), derNull()) : seq(oid(h)));
const pss = (...fields: Buffer[]) => seq(oid(RSA_PSS), seq(...fields));
const PSS_SHA256 = pss(explicit(0, hashAlg(SHA256)), explicit(1, seq(oid(MGF1), hashAlg(SHA256))), explicit(2, integer(32)));

/** Rebuilds a SEQUENCE with child `i` replaced (lengths recomputed). */
function replaceChild(buf: Buffer, parent: DerElement, i: number, bytes: Buffer): Buffer {
  const parts = children(buf, parent, 16).map((c, j) => (j === i ? bytes : Buffer.from(elementBytes(buf, c))));
  return tlv(parent.tag, ...parts);
}

/** Replaces the outer signatureAlgorithm (second child of the top SEQUENCE). */
const outerAlg = (der: Buffer, alg: Buffer): Buffer => replaceChild(der, readElement(der, 0), 1, alg);

/** Replaces the signature AlgorithmIdentifier inside a certificate's TBS as well as outside. */
function bothCertAlgs(der: Buffer, alg: Buffer): Buffer {
  const outer = readElement(der, 0);
  const [tbs] = children(der, outer, 3);
  const hasVersion = der[tbs.contentStart] === 0xa0;
  const newTbs = replaceChild(der, tbs, hasVersion ? 2 : 1, alg);
  const [, , sig] = children(der, outer, 3);
  return seq(newTbs, alg, Buffer.from(elementBytes(der, sig)));
}

/** Replaces the signatureAlgorithm of the BasicOCSPResponse inside an OCSPResponse. */
function ocspAlg(der: Buffer, alg: Buffer): Buffer {
  const outer = readElement(der, 0);
  const [status, bytes] = children(der, outer, 2);
  const rb = readElement(der, bytes.contentStart);
  const [type, octets] = children(der, rb, 2);
  const basic = readElement(der, octets.contentStart);
  const newBasic = replaceChild(der, basic, 1, alg);
  return seq(Buffer.from(elementBytes(der, status)), explicit(0, seq(Buffer.from(elementBytes(der, type)), tlv(0x04, newBasic))));
}

/** The AlgorithmIdentifier of a corpus object (outer signatureAlgorithm). */
const algOf = (der: Buffer): Buffer => Buffer.from(elementBytes(der, children(der, readElement(der, 0), 3)[1]));

const csrDer = () => readPemOrDer(corpus('csr-openssl-p384.pem'), ['CERTIFICATE REQUEST']);

type Case = ParseCase;

const CASES: Case[] = [
  // --- certificates
  { name: 'ok/cert/mutual-ecdsa', input: () => corpus('cert-server-leaf.der'), parse: parseCertificate },
  { name: 'ok/cert/openssl-rsa-pkcs1-null', input: () => corpus('cert-openssl-rsa.der'), parse: parseCertificate },
  { name: 'ok/cert/openssl-rsa-pss', input: () => corpus('cert-openssl-rsa-pss.der'), parse: parseCertificate },
  { name: 'fail/cert/ecdsa-with-null-parameters-outside', input: () => outerAlg(corpus('cert-server-leaf.der'), seq(oid(OID.ecdsaWithSHA384), derNull())), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/ecdsa-with-null-parameters-both', input: () => bothCertAlgs(corpus('cert-server-leaf.der'), seq(oid(OID.ecdsaWithSHA384), derNull())), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/outer-differs-from-signed-copy', input: () => outerAlg(corpus('cert-server-leaf.der'), seq(oid(OID.ecdsaWithSHA512))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/rsa-null-with-content', input: () => bothCertAlgs(corpus('cert-openssl-rsa.der'), seq(oid(OID.sha256WithRSAEncryption), Buffer.from([5, 1, 0]))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/rsa-parameters-absent', input: () => bothCertAlgs(corpus('cert-openssl-rsa.der'), seq(oid(OID.sha256WithRSAEncryption))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/oid-not-minimal', input: () => bothCertAlgs(corpus('cert-openssl-rsa.der'), seq(tlv(0x06, Buffer.from('80' + '2a864886f70d01010b', 'hex')), derNull())), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/oid-unterminated', input: () => bothCertAlgs(corpus('cert-openssl-rsa.der'), seq(tlv(0x06, Buffer.from('2a864886f70d01018b', 'hex')), derNull())), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-without-parameters', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'), seq(oid(RSA_PSS))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-parameters-null', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'), seq(oid(RSA_PSS), derNull())), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-fields-out-of-order', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'),
    pss(explicit(1, seq(oid(MGF1), hashAlg(SHA256))), explicit(0, hashAlg(SHA256)))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-default-sha1-written-out', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'), pss(explicit(0, hashAlg(SHA1)))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-trailer-field-written-out', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'),
    pss(explicit(0, hashAlg(SHA256)), explicit(3, integer(1)))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-mgf-not-mgf1', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'),
    pss(explicit(1, seq(oid('1.2.3.4'), hashAlg(SHA256))))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-hash-not-sha', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'), pss(explicit(0, hashAlg('1.2.840.113549.2.5')))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/pss-negative-salt', input: () => bothCertAlgs(corpus('cert-openssl-rsa-pss.der'),
    pss(explicit(2, tlv(0x02, Buffer.from([0xff]))))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/unknown-algorithm-with-two-parameters', input: () => bothCertAlgs(corpus('cert-openssl-rsa.der'), seq(oid('1.2.3.4'), derNull(), derNull())), parse: parseCertificate, code: 'CERT_MALFORMED' },
  // --- CRLs (inner and outer must also be equal, RFC 5280 5.1.1.2)
  { name: 'ok/crl/mutual', input: () => corpus('crl-client.der'), parse: parseCrl },
  { name: 'fail/crl/ecdsa-with-null-parameters', input: () => {
    const der = corpus('crl-client.der');
    const alg = seq(oid(OID.ecdsaWithSHA256), derNull());
    const outer = readElement(der, 0);
    const [tbs, , sig] = children(der, outer, 3);
    const tbsAlgIndex = der[tbs.contentStart] === 0x02 ? 1 : 0;
    return seq(replaceChild(der, tbs, tbsAlgIndex, alg), alg, Buffer.from(elementBytes(der, sig)));
  }, parse: parseCrl, code: 'CRL_MALFORMED' },
  // --- OCSP responses
  { name: 'ok/ocsp/mutual-response', input: () => corpus('ocsp-response.der'), parse: parseOcspResponse },
  { name: 'fail/ocsp/ecdsa-with-null-parameters', input: () => ocspAlg(corpus('ocsp-response.der'), seq(oid(OID.ecdsaWithSHA256), derNull())), parse: parseOcspResponse, code: 'DER_MALFORMED' },
  { name: 'fail/ocsp/ecdsa-with-garbage-after-oid', input: () => ocspAlg(corpus('ocsp-response.der'), seq(oid(OID.ecdsaWithSHA256), integer(7))), parse: parseOcspResponse, code: 'DER_MALFORMED' },
  // --- CSRs (more through the authority in test/ca/issuance.test.ts)
  { name: 'ok/csr/openssl-p384', input: csrDer, parse: parseCsr },
  { name: 'fail/csr/ecdsa-null', input: () => outerAlg(csrDer(), seq(oid(OID.ecdsaWithSHA256), derNull())), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/algorithm-not-a-sequence', input: () => outerAlg(csrDer(), oid(OID.ecdsaWithSHA256)), parse: parseCsr, code: 'CSR_MALFORMED' },
];

describe('core/algorithm-identifiers: signature algorithms are read strictly', () => {
  parseCaseTests(CASES);

  test('ok/canonical-encodings-of-the-algorithms-mutual-writes-and-openssl-writes', () => {
    for (const name of ['cert-server-leaf.der', 'cert-root.der', 'cert-openssl-rsa.der', 'cert-openssl-rsa-pss.der', 'crl-client.der']) {
      const der = corpus(name);
      const alg = algOf(der);
      assert.equal(readSignatureAlgorithm(alg, readElement(alg, 0)), parseOid(alg), name);
    }
    assert.equal(readSignatureAlgorithm(PSS_SHA256, readElement(PSS_SHA256, 0)), RSA_PSS);
  });
});

function parseOid(alg: Buffer): string {
  return readOid(alg, readElement(alg, 2));
}

describe('core/algorithm-identifiers: SubjectPublicKeyInfo structure', () => {
  const spkiOf = (name: string) => parseCertificate(corpus(name)).spki;
  const rsa = () => spkiOf('cert-openssl-rsa.der');
  const SPKI_CASES: { name: string; spki: () => Buffer; ok?: boolean }[] = [
    { name: 'ok/spki/rsa', spki: rsa, ok: true },
    { name: 'ok/spki/ecdsa', spki: () => spkiOf('cert-server-leaf.der'), ok: true },
    { name: 'fail/spki/rsa-parameters-absent', spki: () => {
      const s = rsa();
      const [, bits] = children(s, readElement(s, 0), 2);
      return seq(seq(oid(OID.rsaEncryption)), Buffer.from(elementBytes(s, bits)));
    } },
    { name: 'fail/spki/trailing-byte', spki: () => Buffer.concat([rsa(), Buffer.from([0])]) },
    { name: 'fail/spki/unused-bits', spki: () => {
      const s = Buffer.from(rsa());
      const [, bits] = children(s, readElement(s, 0), 2);
      s[bits.contentStart] = 1;
      return s;
    } },
    { name: 'fail/spki/ec-without-curve', spki: () => {
      const s = spkiOf('cert-server-leaf.der');
      const [, bits] = children(s, readElement(s, 0), 2);
      return seq(seq(oid(OID.ecPublicKey)), Buffer.from(elementBytes(s, bits)));
    } },
    { name: 'fail/spki/ed25519-with-null', spki: () => seq(seq(oid(OID.ed25519), derNull()), tlv(0x03, Buffer.alloc(33))) },
  ];
  for (const c of SPKI_CASES) {
    test(c.name, () => {
      if (c.ok) readSpki(c.spki());
      else assert.throws(() => readSpki(c.spki()), (e) => isMutualError(e, 'DER_MALFORMED'));
    });
  }
});
