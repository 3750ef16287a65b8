/**
 * Inputs the fuzz target (test/core/fuzz.test.ts) found, kept as named cases: each crashed a reader
 * with a TypeError or RangeError, or was accepted although it is not DER (or not what the
 * structure allows) and a second parser read it differently. Built from the corpus by editing.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseCertificate } from '../../src/core/certificate.ts';
import { revocationUrls } from '../../src/core/cert-urls.ts';
import { parseCsr } from '../../src/core/csr.ts';
import { parseCrl } from '../../src/core/crl-reader.ts';
import { parseOcspRequest } from '../../src/core/ocsp.ts';
import { bitString, boolean, children, derNull, elementBytes, explicit, integer, octetString, oid, readElement, seq, set, tlv, utf8String } from '../../src/core/der.ts';
import { OID } from '../../src/core/oids.ts';
import { parseCaseTests, type ParseCase } from '../helpers/parse-cases.ts';

const CORPUS = path.join(import.meta.dirname, '..', 'fuzz-corpus', 'der');
const corpus = (name: string): Buffer => fs.readFileSync(path.join(CORPUS, name));

/** The server leaf with its extensions replaced (the signature no longer matches: parsing does not check it). */
function leafWithExtensions(...exts: Buffer[]): Buffer {
  const der = corpus('cert-server-leaf.der');
  const [tbs, alg, sig] = children(der, readElement(der, 0), 3);
  const fields = children(der, tbs, 11).filter((f) => f.tag !== 0xa3).map((f) => Buffer.from(elementBytes(der, f)));
  return seq(tlv(0x30, ...fields, explicit(3, seq(...exts))), Buffer.from(elementBytes(der, alg)), Buffer.from(elementBytes(der, sig)));
}

/**
 * The server leaf with TBSCertificate field `i` replaced (0 version, 1 serial, 2 signature, 3 issuer,
 * 4 validity, 5 subject, 6 key, 7 extensions), or with `extra` fields added; `sig` replaces the signatureValue.
 */
function leafWith(o: { field?: [number, Buffer]; extra?: Buffer[]; sig?: Buffer }): Buffer {
  const der = corpus('cert-server-leaf.der');
  const [tbs, alg, sig] = children(der, readElement(der, 0), 3);
  const fields: Buffer[] = children(der, tbs, 11).map((f) => Buffer.from(elementBytes(der, f)));
  if (o.field) fields[o.field[0]] = o.field[1];
  return seq(tlv(0x30, ...fields, ...(o.extra ?? [])), Buffer.from(elementBytes(der, alg)), o.sig ?? Buffer.from(elementBytes(der, sig)));
}
const nameCn = (value: Buffer) => seq(set(seq(oid(OID.commonName), value)));

/** The CRL with TBSCertList field `i` replaced (0 version, 1 signature, 2 issuer, 3 thisUpdate, 4 nextUpdate, 5 entries, 6 extensions). */
function crlWith(i: number, bytes: Buffer): Buffer {
  const der = corpus('crl-client.der');
  const [tbs, alg, sig] = children(der, readElement(der, 0), 3);
  const fields: Buffer[] = children(der, tbs, 8).map((f) => Buffer.from(elementBytes(der, f)));
  fields[i] = bytes;
  return seq(tlv(0x30, ...fields), Buffer.from(elementBytes(der, alg)), Buffer.from(elementBytes(der, sig)));
}
const utcTime = (s: string) => tlv(0x17, Buffer.from(s, 'latin1'));

/** OpenSSL's OCSP request with its nonce extension's OID bytes replaced. */
function ocspRequestWithNonceOid(oidBytes: Buffer): Buffer {
  const der = corpus('ocsp-request-openssl.der');
  const nonce = Buffer.from('06092b0601050507300102', 'hex');
  const at = der.indexOf(nonce);
  assert.ok(at > 0 && oidBytes.length === nonce.length - 2);
  const out = Buffer.from(der);
  out.set(oidBytes, at + 2);
  return out;
}

/** The P-256 CSR with its CertificationRequestInfo rebuilt from edited parts (signature left as is). */
function csrWith(edit: { subject?: Buffer; spki?: Buffer; attributes?: Buffer[] }): Buffer {
  const der = corpus('csr-p256-server.der');
  const [info, alg, sig] = children(der, readElement(der, 0), 3);
  const [version, subject, spki, attrs] = children(der, info, 4);
  const part = (e: typeof version) => Buffer.from(elementBytes(der, e));
  const newInfo = seq(part(version), edit.subject ?? part(subject), edit.spki ?? part(spki), edit.attributes ? explicit(0, ...edit.attributes) : part(attrs));
  return seq(newInfo, part(alg), part(sig));
}
const subjectCn = (value: Buffer) => seq(set(seq(oid(OID.commonName), value)));
const p256Point = () => {
  const s = parseCsr(corpus('csr-p256-server.der')).spki;
  return Buffer.from(elementBytes(s, children(s, readElement(s, 0), 2)[1]));
};

const CASES: ParseCase[] = [
  // --- certificates: crashes
  { name: 'fail/cert/extension-that-is-an-empty-sequence', input: () => leafWithExtensions(seq()), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/extension-without-a-value', input: () => leafWithExtensions(seq(oid(OID.basicConstraints))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/basic-constraints-empty-pathlen', input: () => leafWithExtensions(seq(oid(OID.basicConstraints), octetString(seq(boolean(true), tlv(0x02, Buffer.alloc(0)))))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/basic-constraints-negative-pathlen', input: () => leafWithExtensions(seq(oid(OID.basicConstraints), octetString(seq(boolean(true), tlv(0x02, Buffer.from([0xff])))))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  // --- certificates: accepted though not what the structure allows
  { name: 'fail/cert/eku-holding-a-string', input: () => leafWithExtensions(seq(oid(OID.extKeyUsage), octetString(seq(utf8String('serverAuth'))))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/san-not-a-sequence', input: () => leafWithExtensions(seq(oid(OID.subjectAltName), octetString(tlv(0x82, Buffer.from('a.b'))))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/extension-value-with-trailing-bytes', input: () => leafWithExtensions(seq(oid(OID.subjectKeyIdentifier), octetString(Buffer.concat([octetString(Buffer.alloc(20)), derNull()])))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'ok/cert/pathlen-0', input: () => leafWithExtensions(seq(oid(OID.basicConstraints), boolean(true), octetString(seq(boolean(true), integer(0))))), parse: parseCertificate },
  // --- certificates: accepted though OpenSSL refuses them (the fuzz target cross-checks with X509Certificate)
  { name: 'fail/cert/negative-serial', input: () => leafWith({ field: [1, tlv(0x02, Buffer.from([0xff, 0x01]))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/serial-not-minimal', input: () => leafWith({ field: [1, tlv(0x02, Buffer.from([0x00, 0x32, 0x01]))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/version-not-an-integer', input: () => leafWith({ field: [0, explicit(0, utf8String('v3'))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/version-v1-written-out', input: () => leafWith({ field: [0, explicit(0, integer(0))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/issuer-rdn-that-is-an-integer', input: () => leafWith({ field: [3, seq(tlv(0x02, set(seq(oid(OID.commonName), utf8String('CA')))))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/subject-cn-invalid-utf8', input: () => leafWith({ field: [5, nameCn(tlv(0x0c, Buffer.from([0x61, 0x85, 0x62])))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/subject-cn-universal-string-beyond-unicode', input: () => leafWith({ field: [5, nameCn(tlv(0x1c, Buffer.from('paym')))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/subject-cn-private-tag', input: () => leafWith({ field: [5, nameCn(tlv(0xc2, Buffer.from('x')))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'ok/cert/subject-cn-bmp-string', input: () => leafWith({ field: [5, nameCn(tlv(0x1e, Buffer.from('0061006e', 'hex')))] }), parse: parseCertificate },
  { name: 'fail/cert/key-algorithm-rsa-without-null', input: () => leafWith({ field: [6, seq(seq(oid(OID.rsaEncryption)), bitString(seq(integer(3), integer(3))))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/unknown-field-after-the-key', input: () => leafWith({ extra: [derNull()] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/subject-unique-id-bad-unused-bits', input: () => leafWith({ field: [7, tlv(0x82, Buffer.from([9, 0]))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/signature-bit-string-unused-bits', input: () => leafWith({ sig: tlv(0x03, Buffer.from([0x10, 1, 2, 3])) }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/critical-boolean-of-two-bytes', input: () => leafWithExtensions(seq(oid(OID.keyUsage), tlv(0x01, Buffer.from([0xff, 0x04])), octetString(Buffer.from('03020106', 'hex')))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/extension-oid-unterminated', input: () => leafWithExtensions(seq(tlv(0x06, Buffer.from([0x55, 0x1d, 0x8f])), octetString(Buffer.from('03020106', 'hex')))), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/validity-month-00', input: () => leafWith({ field: [4, seq(utcTime('270001093000Z'), utcTime('270530093000Z'))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  { name: 'fail/cert/validity-31-april', input: () => leafWith({ field: [4, seq(utcTime('270301093000Z'), utcTime('270431093000Z'))] }), parse: parseCertificate, code: 'CERT_MALFORMED' },
  // --- CRLs and OCSP requests: accepted though @peculiar/asn1-x509 and OpenSSL read them otherwise
  { name: 'ok/crl/as-made', input: () => corpus('crl-client.der'), parse: parseCrl },
  { name: 'fail/crl/this-update-hour-49', input: () => crlWith(3, utcTime('270301493000Z')), parse: parseCrl, code: 'CRL_MALFORMED' },
  { name: 'fail/crl/next-update-31-april', input: () => crlWith(4, utcTime('270431093000Z')), parse: parseCrl, code: 'CRL_MALFORMED' },
  { name: 'fail/crl/entry-revoked-31-april', input: () => crlWith(5, seq(seq(integer(5), utcTime('270431093000Z')))), parse: parseCrl, code: 'CRL_MALFORMED' },
  { name: 'fail/crl/extension-oid-unterminated', input: () => crlWith(6, explicit(0, seq(seq(tlv(0x06, Buffer.from([0x55, 0x1d, 0xa0])), octetString(integer(1)))))), parse: parseCrl, code: 'CRL_MALFORMED' },
  { name: 'fail/crl/extension-critical-not-a-boolean', input: () => crlWith(6, explicit(0, seq(seq(oid('1.2.3.4'), integer(1), octetString(integer(1)))))), parse: parseCrl, code: 'CRL_MALFORMED' },
  { name: 'ok/ocsp-request/openssl', input: () => corpus('ocsp-request-openssl.der'), parse: parseOcspRequest },
  { name: 'fail/ocsp-request/nonce-oid-unterminated', input: () => ocspRequestWithNonceOid(Buffer.from('2b06010505073001ff', 'hex')), parse: parseOcspRequest, code: 'DER_MALFORMED' },
  { name: 'fail/ocsp-request/extension-oid-not-minimal', input: () => ocspRequestWithNonceOid(Buffer.from('800601050507300102', 'hex')), parse: parseOcspRequest, code: 'DER_MALFORMED' },
  // --- revocationUrls: crashes
  { name: 'fail/cert-urls/extension-that-is-an-empty-sequence', input: () => leafWithExtensions(seq()), parse: revocationUrls, code: 'CERT_MALFORMED' },
  { name: 'fail/cert-urls/empty-extensions-wrapper', input: () => leafWith({ field: [7, explicit(3)] }), parse: revocationUrls, code: 'CERT_MALFORMED' },
  { name: 'ok/cert-urls/leaf', input: () => corpus('cert-server-leaf.der'), parse: revocationUrls },
  // --- CSRs: accepted though OpenSSL or @peculiar/asn1-csr read them otherwise
  { name: 'ok/csr/as-made', input: () => corpus('csr-p256-server.der'), parse: parseCsr },
  { name: 'fail/csr/cn-invalid-utf8', input: () => csrWith({ subject: subjectCn(tlv(0x0c, Buffer.from([0x61, 0xe5, 0x6e]))) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/cn-printable-string-not-ascii', input: () => csrWith({ subject: subjectCn(tlv(0x13, Buffer.from([0x61, 0xe9]))) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/cn-universal-string', input: () => csrWith({ subject: subjectCn(tlv(0x1c, Buffer.from('Acme'))) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/rdn-not-a-set', input: () => csrWith({ subject: seq(seq(seq(oid(OID.commonName), utf8String('api')))) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/atv-not-a-sequence', input: () => csrWith({ subject: seq(set(explicit(0, oid(OID.commonName), utf8String('api')))) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/ec-key-with-null-curve', input: () => csrWith({ spki: seq(seq(oid(OID.ecPublicKey), derNull()), p256Point()) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/unknown-key-with-bad-bit-string-parameters', input: () => csrWith({ spki: seq(seq(oid('1.2.3.4'), Buffer.from([0x03, 0x01, 0x07])), p256Point()) }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/unknown-attribute-with-truncated-inner-element', input: () => csrWith({ attributes: [seq(oid('1.2.840.113549.1.9.7'), set(seq(tlv(0x0c, Buffer.from('x')), Buffer.from([0x30, 0x05, 0x01]))))] }),
    parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/unknown-attribute-with-end-of-contents-tag', input: () => csrWith({ attributes: [seq(oid('1.2.840.113549.1.9.7'), set(tlv(0x20, utf8String('x'))))] }), parse: parseCsr, code: 'CSR_MALFORMED' },
  { name: 'ok/csr/challenge-password-attribute', input: () => csrWith({ attributes: [seq(oid('1.2.840.113549.1.9.7'), set(utf8String('secret')))] }), parse: parseCsr },
  { name: 'fail/csr/attribute-with-empty-values', input: () => csrWith({ attributes: [seq(oid('1.2.840.113549.1.9.7'), set())] }), parse: parseCsr, code: 'CSR_MALFORMED' },
];

describe('core/readers: inputs the fuzz target found', () => {
  parseCaseTests(CASES);
});
