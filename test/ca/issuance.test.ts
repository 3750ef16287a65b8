/**
 * The issuance pipeline's gates: role separation, name policy, CSR handling (proof of possession,
 * algorithms, forbidden extensions, malformed and oversized input) and the pre-issuance lint.
 * Every rejection is a coded error and leaves the inventory and the audit log as they were.
 */
import { describe, test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { BasicConstraints, ExtendedKeyUsage, Extensions, Name, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { makeTestCa, tempDir, type TestCa } from '../helpers/test-ca.ts';
import { openssl, requireTool } from '../helpers/tools.ts';
import { buildCsr, parseCsr, verifyCsr, verifyCsrOffloaded, MAX_CSR_BYTES } from '../../src/core/csr.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import { lintCertificate, type LintIssuer, type LintRule } from '../../src/core/lint.ts';
import { newSerial, subjectFor, type CertificateFields, type Role } from '../../src/core/certificate-template.ts';
import { spkiDer } from '../../src/core/algorithms.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { ipToBytes, type SubjectAltNames } from '../../src/core/names.ts';
import { OID } from '../../src/core/oids.ts';
import { bitString, children, derNull, elementBytes, explicit, integer, octetString, oid, readElement, seq, set, tlv, unsignedInteger } from '../../src/core/der.ts';
import { encodeGeneralNames, encodeName } from '../../src/core/names.ts';
import { MAX_OBJECT_BYTES, readPemOrDer, toPem } from '../../src/core/pem.ts';
import type { IssueRequest } from '../../src/ca/authority.ts';

const NOW = new Date('2027-03-01T09:30:00Z');
const DAY = 86_400_000;
const names = (n: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...n });
const ID = 'spiffe://acme.internal/prod/payments';

// ------------------------------------------------------------------------------------------------
// CSRs: made by OpenSSL (the client tools users have) and by the project's own builder

let csrDir = '';
let csrNo = 0;
before(() => {
  csrDir = tempDir('mutual-csr-');
});
after(() => {
  fs.rmSync(csrDir, { recursive: true, force: true });
});

const GENPKEY: Record<string, string[]> = {
  p256: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  secp256k1: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1'],
  ed25519: ['-algorithm', 'ED25519'],
  rsa1024: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
  rsa2048: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
};
const keyFiles = new Map<string, string>();

/** A key file made by `openssl genpkey`, one per type, reused. */
function opensslKey(type: keyof typeof GENPKEY): string {
  if (!keyFiles.has(type)) {
    const file = path.join(csrDir, `${type}.key`);
    const r = openssl(['genpkey', ...GENPKEY[type], '-out', file]);
    if (r.status !== 0) throw new Error(`openssl genpkey ${type}: ${r.stderr}`);
    keyFiles.set(type, file);
  }
  return keyFiles.get(type)!;
}

/** A PEM CSR made by `openssl req -new` with `-addext` extensions. */
function opensslCsr(o: { key?: keyof typeof GENPKEY; cn?: string; addext?: string[]; args?: string[] }): string {
  const out = path.join(csrDir, `req-${++csrNo}.csr`);
  const args = ['req', '-new', '-key', opensslKey(o.key ?? 'p256'), '-subj', `/CN=${o.cn ?? 'api'}`, '-out', out, ...(o.args ?? [])];
  for (const e of o.addext ?? []) args.push('-addext', e);
  const r = openssl(args);
  if (r.status !== 0) throw new Error(`openssl req: ${r.stderr}`);
  return fs.readFileSync(out, 'utf8');
}

/** A DER CSR from the project's builder. */
function ownCsr(n: SubjectAltNames, o: { key?: crypto.KeyObject; ca?: boolean; cn?: string } = {}): Buffer {
  const key = o.key ?? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return buildCsr({ privateKey: key, commonName: o.cn ?? 'api', names: n, ca: o.ca });
}

/** Flips one bit of a byte (negative index counts from the end). */
function flip(der: Buffer, index: number): Buffer {
  const b = Buffer.from(der);
  const i = index < 0 ? b.length + index : index;
  b[i] ^= 0x01;
  return b;
}

/** Replaces the SPKI inside a DER CSR, fixing the lengths of the enclosing SEQUENCEs (signature left as is). */
function rewrapCsr(der: Buffer, oldSpki: Buffer, newSpki: Buffer): Buffer {
  const at = der.indexOf(oldSpki);
  assert.ok(at > 0);
  const outer = readElement(der, 0);
  const info = readElement(der, outer.contentStart);
  const infoBody = Buffer.concat([der.subarray(info.contentStart, at), newSpki, der.subarray(at + oldSpki.length, info.end)]);
  return tlv(0x30, tlv(0x30, infoBody), der.subarray(info.end, outer.end));
}

// ------------------------------------------------------------------------------------------------
// Hand-made RSA keys and CSRs: public material only, no private key exists for most of them

/** A real RSA-2048 modulus (from a generated key whose private half is dropped), made once. */
let realModulusCache: Buffer | undefined;
function realModulus(): Buffer {
  realModulusCache ??= Buffer.from(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }).n!, 'base64url');
  return realModulusCache;
}

/** An odd number of `bits` bits with its top bit set (random: it may well have small factors). */
function randomModulus(bits: number): Buffer {
  const m = crypto.randomBytes(Math.ceil(bits / 8));
  const top = bits % 8 || 8;
  m[0] = (m[0] & ((1 << top) - 1)) | (1 << (top - 1));
  m[m.length - 1] |= 1;
  return m;
}

/** A multiple of 3 near the real modulus, still odd and of the same size: a small factor. */
function modulusWithFactor3(): Buffer {
  let n = BigInt('0x' + realModulus().toString('hex'));
  n -= n % 3n;
  if (n % 2n === 0n) n += 3n;
  return Buffer.from(n.toString(16), 'hex');
}

/** An RSA SubjectPublicKeyInfo for any modulus and exponent (RFC 3279 2.3.1). */
function rsaSpki(modulus: Buffer, exponent: bigint): Buffer {
  const hex = exponent.toString(16);
  const e = Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
  return seq(seq(oid(OID.rsaEncryption), derNull()), bitString(seq(unsignedInteger(modulus), unsignedInteger(e))));
}

const SHA256_RSA_ALG = seq(oid(OID.sha256WithRSAEncryption), derNull());

/** A CSR for a key given by its SPKI, "signed" (sha256WithRSAEncryption) by `sign` over the CertificationRequestInfo. */
function rsaCsrFromSpki(spki: Buffer, n: SubjectAltNames, sign: (info: Buffer, modulusBytes: number) => Buffer): Buffer {
  const ext = seq(oid(OID.subjectAltName), octetString(encodeGeneralNames(n)));
  const info = seq(integer(0), encodeName({ commonName: 'api' }), spki, explicit(0, seq(oid(OID.extensionRequest), set(seq(ext)))));
  const [, bits] = children(spki, readElement(spki, 0), 2);
  const rsaKey = readElement(spki, bits.contentStart + 1);
  const k = readElement(spki, rsaKey.contentStart);
  const modLen = k.end - k.contentStart - (spki[k.contentStart] === 0 ? 1 : 0);
  return seq(info, SHA256_RSA_ALG, bitString(sign(info, modLen)));
}

/**
 * A CSR whose "signature" is the PKCS#1 v1.5 encoded digest itself (RFC 8017 9.2): with e = 1,
 * s^e mod n = s, so it verifies for any modulus, without any private key.
 */
function paddedDigestCsr(spki: Buffer, n: SubjectAltNames): Buffer {
  return rsaCsrFromSpki(spki, n, (info, modLen) => {
    const digestInfo = seq(seq(oid('2.16.840.1.101.3.4.2.1'), derNull()), octetString(crypto.hash('sha256', info, 'buffer')));
    return Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(modLen - 3 - digestInfo.length, 0xff), Buffer.from([0]), digestInfo]);
  });
}

/** A signed CSR with its (unsigned) signatureAlgorithm replaced: the signature still verifies. */
function withSignatureAlgorithm(der: Buffer, alg: Buffer): Buffer {
  const [info, , sig] = children(der, readElement(der, 0), 3);
  return seq(elementBytes(der, info), alg, elementBytes(der, sig));
}

/** A CSR signed by an RSA-2048 key made here with public exponent `e` (a real proof of possession). */
const rsaKeyCache = new Map<number, crypto.KeyObject>();
function rsaCsrWithExponent(e: number, n: SubjectAltNames): Buffer {
  if (!rsaKeyCache.has(e)) rsaKeyCache.set(e, crypto.generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: e }).privateKey);
  const key = rsaKeyCache.get(e)!;
  return rsaCsrFromSpki(spkiDer(crypto.createPublicKey(key)), n, (info) => crypto.sign('sha256', info, key));
}

const API = (): SubjectAltNames => names({ dns: ['api.acme.internal'] });

/** A DER SEQUENCE header around `size` bytes of filler: looks like DER to the PEM/DER sniffing. */
function bigDer(size: number): Buffer {
  const body = Buffer.alloc(size, 0x05);
  const header = size < 0x10000 ? Buffer.from([0x30, 0x82, size >> 8, size & 0xff]) : Buffer.from([0x30, 0x83, size >> 16, (size >> 8) & 0xff, size & 0xff]);
  return Buffer.concat([header, body]);
}

// ------------------------------------------------------------------------------------------------

/** Asserts a MutualError with `code` (and a lint rule, when given). */
function assertCode(e: unknown, code: ErrorCode, rule?: LintRule): true {
  assert.ok(isMutualError(e), `not a MutualError: ${String(e)}`);
  assert.equal(e.code, code, `got ${e.code}: ${e.message}`);
  if (rule) assert.equal(e.fields.rule, rule);
  return true;
}

async function inventoryCount(ca: TestCa): Promise<number> {
  return (await ca.ca.list({ limit: 100_000 })).length;
}

async function auditCount(ca: TestCa): Promise<number> {
  let n = 0;
  for await (const _ of ca.ca.store.auditEntries()) n++;
  return n;
}

/** One request that must be refused. */
interface FailCase {
  name: string;
  /** True when the request is made with the OpenSSL CLI. */
  openssl?: boolean;
  req: () => IssueRequest;
  code: ErrorCode;
  rule?: LintRule;
}

const server = (n: Partial<SubjectAltNames>, extra: Partial<IssueRequest> = {}): IssueRequest => ({ role: 'server', names: names(n), ...extra });
const client = (n: Partial<SubjectAltNames>, extra: Partial<IssueRequest> = {}): IssueRequest => ({ role: 'client', names: names(n), ...extra });
const csrReq = (role: 'server' | 'client', csr: string | Buffer): IssueRequest => ({ role, csr });

const FAIL_CASES: FailCase[] = [
  // --- names and policy
  { name: 'fail/policy/dns-outside-trust-domain', req: () => server({ dns: ['api.example.com'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/dns-lookalike-suffix', req: () => server({ dns: ['evilacme.internal'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/one-bad-name-among-good', req: () => server({ dns: ['api.acme.internal', 'api.example.com'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/ipv4-outside-ranges', req: () => server({ dns: ['api.acme.internal'], ip: ['10.0.0.5'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/ipv6-outside-ranges', req: () => server({ ip: ['::2'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/not-an-ip', req: () => server({ ip: ['127.0.0.256'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/wildcard', req: () => server({ dns: ['*.acme.internal'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/bad-dns-syntax', req: () => server({ dns: ['api_.acme.internal'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/policy/spiffe-other-trust-domain', req: () => client({ uri: ['spiffe://other.internal/prod/payments'] }), code: 'POLICY_BAD_IDENTITY' },
  { name: 'fail/policy/uri-not-spiffe', req: () => client({ uri: ['https://acme.internal/prod/payments'] }), code: 'POLICY_BAD_IDENTITY' },
  { name: 'fail/policy/spiffe-dot-dot-segment', req: () => client({ uri: ['spiffe://acme.internal/prod/..'] }), code: 'POLICY_BAD_IDENTITY' },
  { name: 'fail/policy/spiffe-no-path', req: () => client({ uri: ['spiffe://acme.internal'] }), code: 'POLICY_BAD_IDENTITY' },
  { name: 'fail/policy/server-no-names', req: () => server({}), code: 'POLICY_NO_NAMES' },
  { name: 'fail/policy/client-no-identity', req: () => client({}), code: 'POLICY_NO_NAMES' },
  { name: 'fail/policy/too-many-names', req: () => server({ dns: Array.from({ length: 101 }, (_, i) => `h${i}.acme.internal`) }), code: 'DER_TOO_COMPLEX' },
  // --- role separation
  { name: 'fail/role/server-with-identity-uri', req: () => server({ dns: ['api.acme.internal'], uri: [ID] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/role/server-with-only-identity-uri', req: () => server({ uri: [ID] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/role/client-with-dns', req: () => client({ dns: ['payments.acme.internal'], uri: [ID] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/role/client-with-ip', req: () => client({ ip: ['127.0.0.1'], uri: [ID] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/role/client-with-two-identities', req: () => client({ uri: [ID, 'spiffe://acme.internal/prod/billing'] }), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/role/server-csr-asking-clientAuth', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal', 'extendedKeyUsage=clientAuth'] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/role/client-csr-asking-serverAuth', openssl: true,
    req: () => csrReq('client', opensslCsr({ addext: [`subjectAltName=URI:${ID}`, 'extendedKeyUsage=serverAuth'] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/role/server-csr-asking-both-ekus', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal', 'extendedKeyUsage=serverAuth,clientAuth'] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  // --- lifetime and issuer validity
  { name: 'fail/validity/days-over-max', req: () => server({ dns: ['api.acme.internal'] }, { days: 398 }), code: 'POLICY_VALIDITY_TOO_LONG' },
  { name: 'fail/validity/days-zero', req: () => server({ dns: ['api.acme.internal'] }, { days: 0 }), code: 'POLICY_VALIDITY_TOO_LONG' },
  // The profile allows 1 second and up; half a second rounds to an empty validity.
  { name: 'fail/validity/under-one-second', req: () => client({ uri: [ID] }, { lifetimeSeconds: 0.5 }), code: 'POLICY_VALIDITY_TOO_LONG' },
  { name: 'fail/validity/negative-seconds', req: () => client({ uri: [ID] }, { lifetimeSeconds: -1 }), code: 'POLICY_VALIDITY_TOO_LONG' },
  { name: 'fail/validity/before-issuer-notBefore', req: () => server({ dns: ['api.acme.internal'] }, { now: new Date(NOW.getTime() - DAY) }), code: 'CA_ISSUER_EXPIRED' },
  { name: 'fail/validity/after-issuer-notAfter', req: () => server({ dns: ['api.acme.internal'] }, { now: new Date(NOW.getTime() + 731 * DAY) }), code: 'CA_ISSUER_EXPIRED' },
  // --- CSR proof of possession and algorithms
  { name: 'fail/csr/bad-signature', req: () => csrReq('server', flip(ownCsr(names({ dns: ['api.acme.internal'] })), -1)), code: 'CSR_BAD_SIGNATURE' },
  { name: 'fail/csr/bad-signature-pem', req: () => csrReq('server', toPem(flip(ownCsr(names({ dns: ['api.acme.internal'] })), -2), 'CERTIFICATE REQUEST')), code: 'CSR_BAD_SIGNATURE' },
  { name: 'fail/csr/bad-signature-ed25519',
    req: () => csrReq('server', flip(ownCsr(names({ dns: ['api.acme.internal'] }), { key: crypto.generateKeyPairSync('ed25519').privateKey }), -5)), code: 'CSR_BAD_SIGNATURE' },
  { name: 'fail/csr/signed-content-changed', req: () => {
    // Change the requested DNS name after signing: 'api' -> 'apj'.
    const der = ownCsr(names({ dns: ['api.acme.internal'] }));
    const at = der.indexOf(Buffer.from('api.acme.internal'));
    return csrReq('server', flip(der, at + 2));
  }, code: 'CSR_BAD_SIGNATURE' },
  { name: 'fail/csr/sha1-signature', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal'], args: ['-sha1'] })), code: 'CSR_UNSUPPORTED_ALGORITHM' },
  { name: 'fail/csr/rsa-pss-signature', openssl: true,
    req: () => csrReq('server', opensslCsr({ key: 'rsa2048', addext: ['subjectAltName=DNS:api.acme.internal'], args: ['-sigopt', 'rsa_padding_mode:pss'] })), code: 'CSR_UNSUPPORTED_ALGORITHM' },
  // A weak key in a CSR is the caller's mistake, refused as KEY_WEAK before its signature is checked
  // (the lint's key-weak rule is the second line, for keys that reach it another way).
  { name: 'fail/csr/rsa-1024-key', openssl: true,
    req: () => csrReq('server', opensslCsr({ key: 'rsa1024', addext: ['subjectAltName=DNS:api.acme.internal'] })), code: 'KEY_WEAK' },
  { name: 'fail/csr/secp256k1-key', openssl: true,
    req: () => csrReq('server', opensslCsr({ key: 'secp256k1', addext: ['subjectAltName=DNS:api.acme.internal'] })), code: 'KEY_WEAK' },
  { name: 'fail/csr/x25519-key-own-builder-spki', req: () => {
    // An X25519 key cannot sign; splice its SPKI into a signed CSR: refused for the key type first.
    const der = ownCsr(names({ dns: ['api.acme.internal'] }));
    const p256 = parseCsr(der).spki;
    const x25519 = spkiDer(crypto.generateKeyPairSync('x25519').publicKey);
    return csrReq('server', rewrapCsr(der, p256, x25519));
  }, code: 'KEY_WEAK' },
  // --- RSA keys as the Baseline Requirements check them (6.1.6): refused before the signature is trusted
  // e = 1 makes the PKCS#1 v1.5 encoded digest its own signature: no private key, no proof of possession.
  { name: 'fail/csr/rsa-exponent-1-padded-digest-signature', req: () => csrReq('server', paddedDigestCsr(rsaSpki(realModulus(), 1n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-exponent-1-random-modulus-pem', req: () => csrReq('server', toPem(paddedDigestCsr(rsaSpki(randomModulus(2048), 1n), API()), 'CERTIFICATE REQUEST')), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-exponent-3-real-key', req: () => csrReq('server', rsaCsrWithExponent(3, API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-exponent-65535', req: () => csrReq('server', paddedDigestCsr(rsaSpki(realModulus(), 65535n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-exponent-even', req: () => csrReq('server', paddedDigestCsr(rsaSpki(realModulus(), 65538n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-exponent-2^256+1', req: () => csrReq('server', paddedDigestCsr(rsaSpki(realModulus(), 2n ** 256n + 1n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-8192-modulus', req: () => csrReq('server', paddedDigestCsr(rsaSpki(randomModulus(8192), 65537n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-4104-modulus', req: () => csrReq('server', paddedDigestCsr(rsaSpki(randomModulus(4104), 65537n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-2052-modulus-not-whole-bytes', req: () => csrReq('server', paddedDigestCsr(rsaSpki(randomModulus(2052), 65537n), API())), code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-even-modulus', req: () => {
    const m = Buffer.from(realModulus());
    m[m.length - 1] &= 0xfe;
    return csrReq('server', paddedDigestCsr(rsaSpki(m, 65537n), API()));
  }, code: 'KEY_WEAK' },
  { name: 'fail/csr/rsa-modulus-divisible-by-3', req: () => csrReq('server', paddedDigestCsr(rsaSpki(modulusWithFactor3(), 65537n), API())), code: 'KEY_WEAK' },
  // --- AlgorithmIdentifiers read strictly (RFC 4055 5, RFC 5758 3.2, BR 7.1.3.2): the signatureAlgorithm
  // is outside the signed bytes, so a CSR with odd parameters still "verifies" unless they are read.
  { name: 'fail/csr/rsa-signature-null-with-content', req: () => csrReq('server',
    withSignatureAlgorithm(rsaCsrWithExponent(65537, API()), seq(oid(OID.sha256WithRSAEncryption), Buffer.from([0x05, 0x01, 0x00])))), code: 'CSR_MALFORMED' },
  { name: 'fail/csr/rsa-signature-parameters-absent', req: () => csrReq('server',
    withSignatureAlgorithm(rsaCsrWithExponent(65537, API()), seq(oid(OID.sha256WithRSAEncryption)))), code: 'CSR_MALFORMED' },
  { name: 'fail/csr/rsa-signature-parameters-not-null', req: () => csrReq('server',
    withSignatureAlgorithm(rsaCsrWithExponent(65537, API()), seq(oid(OID.sha256WithRSAEncryption), integer(0)))), code: 'CSR_MALFORMED' },
  { name: 'fail/csr/rsa-signature-null-then-extra', req: () => csrReq('server',
    withSignatureAlgorithm(rsaCsrWithExponent(65537, API()), seq(oid(OID.sha256WithRSAEncryption), derNull(), derNull()))), code: 'CSR_MALFORMED' },
  { name: 'fail/csr/ecdsa-signature-with-null-parameters', req: () => csrReq('server',
    withSignatureAlgorithm(ownCsr(API()), seq(oid(OID.ecdsaWithSHA256), derNull()))), code: 'CSR_MALFORMED' },
  { name: 'fail/csr/ed25519-signature-with-null-parameters', req: () => csrReq('server',
    withSignatureAlgorithm(ownCsr(API(), { key: crypto.generateKeyPairSync('ed25519').privateKey }), seq(oid(OID.ed25519), derNull()))), code: 'CSR_MALFORMED' },
  { name: 'fail/csr/rsa-spki-parameters-absent', req: () => {
    const der = rsaCsrWithExponent(65537, API());
    const spki = parseCsr(der).spki;
    const [, bits] = children(spki, readElement(spki, 0), 2);
    return csrReq('server', rewrapCsr(der, spki, seq(seq(oid(OID.rsaEncryption)), elementBytes(spki, bits))));
  }, code: 'CSR_MALFORMED' },
  { name: 'fail/csr/rsa-spki-modulus-not-minimal', req: () => {
    const der = rsaCsrWithExponent(65537, API());
    const spki = parseCsr(der).spki;
    const bad = seq(seq(oid(OID.rsaEncryption), derNull()), bitString(seq(tlv(0x02, Buffer.from([0, 0]), realModulus()), integer(65537))));
    return csrReq('server', rewrapCsr(der, spki, bad));
  }, code: 'CSR_MALFORMED' },
  // --- CSR extensions
  { name: 'fail/csr/ca-true', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal', 'basicConstraints=critical,CA:TRUE'] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/csr/ca-true-own-builder', req: () => csrReq('client', ownCsr(names({ uri: [ID] }), { ca: true })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/csr/unknown-extension-nsComment', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal', 'nsComment=hello'] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/csr/unknown-extension-private-oid', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal', '1.3.6.1.4.1.99999.1=ASN1:NULL'] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/csr/email-san', openssl: true,
    req: () => csrReq('client', opensslCsr({ addext: [`subjectAltName=URI:${ID},email:ops@acme.internal`] })), code: 'CSR_FORBIDDEN_EXTENSION' },
  { name: 'fail/csr/names-outside-policy', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:evil.example.com'] })), code: 'POLICY_NAME_NOT_ALLOWED' },
  { name: 'fail/csr/no-san-only-cn', openssl: true, req: () => csrReq('server', opensslCsr({ cn: 'api.acme.internal' })), code: 'POLICY_NO_NAMES' },
  { name: 'fail/csr/identity-of-another-trust-domain', openssl: true,
    req: () => csrReq('client', opensslCsr({ addext: ['subjectAltName=URI:spiffe://other.internal/prod/payments'] })), code: 'POLICY_BAD_IDENTITY' },
  // --- malformed and oversized input
  { name: 'fail/input/truncated-der', req: () => { const d = ownCsr(names({ dns: ['api.acme.internal'] })); return csrReq('server', d.subarray(0, d.length - 10)); }, code: 'CSR_MALFORMED' },
  { name: 'fail/input/truncated-der-in-pem', req: () => { const d = ownCsr(names({ dns: ['api.acme.internal'] })); return csrReq('server', toPem(d.subarray(0, 40), 'CERTIFICATE REQUEST')); }, code: 'CSR_MALFORMED' },
  { name: 'fail/input/trailing-bytes', req: () => csrReq('server', Buffer.concat([ownCsr(names({ dns: ['api.acme.internal'] })), Buffer.from([0, 0])])), code: 'CSR_MALFORMED' },
  { name: 'fail/input/garbage-der', req: () => csrReq('server', Buffer.concat([Buffer.from([0x30, 0x81, 0x80]), Buffer.alloc(128, 0xff)])), code: 'CSR_MALFORMED' },
  { name: 'fail/input/sequence-of-nothing', req: () => csrReq('server', Buffer.from([0x30, 0x00])), code: 'CSR_MALFORMED' },
  // A certificate's TBS has more parts than a CertificationRequestInfo: the bounded reader stops there.
  { name: 'fail/input/a-certificate-instead-of-a-csr', req: () => csrReq('server', readPemOrDer(adminPem, ['CERTIFICATE'])), code: 'CSR_MALFORMED' },
  { name: 'fail/input/garbage-text', req: () => csrReq('server', 'this is not a certificate request\n'), code: 'PEM_MALFORMED' },
  { name: 'fail/input/empty', req: () => csrReq('server', ''), code: 'PEM_MALFORMED' },
  { name: 'fail/input/empty-bytes', req: () => csrReq('server', Buffer.alloc(0)), code: 'PEM_MALFORMED' },
  { name: 'fail/input/truncated-pem', req: () => { const p = toPem(ownCsr(names({ dns: ['api.acme.internal'] })), 'CERTIFICATE REQUEST'); return csrReq('server', p.slice(0, p.length / 2)); }, code: 'PEM_MALFORMED' },
  { name: 'fail/input/pem-bad-base64-length', req: () => {
    const p = toPem(ownCsr(names({ dns: ['api.acme.internal'] })), 'CERTIFICATE REQUEST');
    return csrReq('server', p.replace(/\n([A-Za-z0-9+/]{64})\n/, (_m, line: string) => `\n${line.slice(1)}\n`));
  }, code: 'PEM_MALFORMED' },
  { name: 'fail/input/pem-wrong-label', req: () => csrReq('server', adminPem), code: 'PEM_WRONG_TYPE' },
  { name: 'fail/input/oversized-der-over-csr-limit', req: () => csrReq('server', bigDer(MAX_CSR_BYTES + 1024)), code: 'INPUT_TOO_LARGE' },
  { name: 'fail/input/oversized-der-over-object-limit', req: () => csrReq('server', bigDer(MAX_OBJECT_BYTES + 1024)), code: 'INPUT_TOO_LARGE' },
  { name: 'fail/input/oversized-pem-over-csr-limit', req: () => csrReq('server', toPem(bigDer(MAX_CSR_BYTES + 1024), 'CERTIFICATE REQUEST')), code: 'INPUT_TOO_LARGE' },
  { name: 'fail/input/oversized-pem-text', req: () => csrReq('server', '-----BEGIN CERTIFICATE REQUEST-----\n' + 'A'.repeat(3 * MAX_OBJECT_BYTES) + '\n-----END CERTIFICATE REQUEST-----\n'), code: 'INPUT_TOO_LARGE' },
];

let adminPem = '';

// Both ways of running the crypto: on the calling thread (the CLI, one core) and on libuv's thread
// pool (`mutual serve` on several cores). The same requests are refused and issued either way.
for (const offloadCrypto of [false, true]) {
const how = offloadCrypto ? ' (crypto on the thread pool)' : '';

describe(`ca/issuance: rejections issue nothing${how}`, () => {
  let ca: TestCa;
  before(async () => {
    ca = await makeTestCa({ now: NOW, offloadCrypto });
    adminPem = ca.init.admin.certificatePem;
  });
  after(() => ca?.close());

  for (const c of FAIL_CASES) {
    test(c.name, async (t) => {
      if (c.openssl && !requireTool(t, 'openssl')) return;
      const req = c.req();
      const inventory = await inventoryCount(ca);
      const audit = await auditCount(ca);
      await assert.rejects(ca.ca.issue({ now: NOW, ...req }), (e) => assertCode(e, c.code, c.rule));
      assert.equal(await inventoryCount(ca), inventory, 'nothing in the inventory');
      assert.equal(await auditCount(ca), audit, 'nothing in the audit log');
    });
  }
});

// ------------------------------------------------------------------------------------------------

/** One request that must be issued. */
interface OkCase {
  name: string;
  openssl?: boolean;
  req: () => IssueRequest;
  /** The names the certificate must carry. */
  want: SubjectAltNames;
}

const OK_CASES: OkCase[] = [
  { name: 'ok/csr/openssl-p256-server-dns-and-ip', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal,IP:127.0.0.1,IP:::1'] })),
    want: names({ dns: ['api.acme.internal'], ip: ['127.0.0.1', '::1'] }) },
  { name: 'ok/csr/openssl-rsa2048-client-identity', openssl: true,
    req: () => csrReq('client', opensslCsr({ key: 'rsa2048', cn: 'payments', addext: [`subjectAltName=URI:${ID}`] })), want: names({ uri: [ID] }) },
  { name: 'ok/csr/openssl-ed25519-server', openssl: true,
    req: () => csrReq('server', opensslCsr({ key: 'ed25519', addext: ['subjectAltName=DNS:api.acme.internal'] })), want: names({ dns: ['api.acme.internal'] }) },
  { name: 'ok/csr/openssl-der', openssl: true,
    req: () => csrReq('server', readPemOrDer(opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal'] }), ['CERTIFICATE REQUEST'])), want: names({ dns: ['api.acme.internal'] }) },
  { name: 'ok/csr/openssl-same-role-eku-and-key-usage-tolerated', openssl: true,
    req: () => csrReq('server', opensslCsr({ addext: ['subjectAltName=DNS:api.acme.internal', 'extendedKeyUsage=serverAuth', 'keyUsage=critical,digitalSignature', 'basicConstraints=CA:FALSE'] })),
    want: names({ dns: ['api.acme.internal'] }) },
  { name: 'ok/csr/new-certificate-request-label',
    req: () => csrReq('client', toPem(ownCsr(names({ uri: [ID] })), 'NEW CERTIFICATE REQUEST')), want: names({ uri: [ID] }) },
  { name: 'ok/csr/request-names-override-the-csr',
    req: () => ({ role: 'server', csr: ownCsr(names({ dns: ['old.acme.internal'] })), names: names({ dns: ['new.acme.internal'] }) }), want: names({ dns: ['new.acme.internal'] }) },
  { name: 'ok/names/normalized-lowercase-no-trailing-dot-deduplicated',
    req: () => server({ dns: ['API.Acme.Internal.', 'api.acme.internal'] }), want: names({ dns: ['api.acme.internal'] }) },
  { name: 'ok/names/localhost-and-loopback', req: () => server({ dns: ['localhost'], ip: ['127.0.0.1', '::1'] }), want: names({ dns: ['localhost'], ip: ['127.0.0.1', '::1'] }) },
  { name: 'ok/no-csr/key-made-for-the-caller', req: () => client({ uri: [ID] }, { keyType: 'ed25519' }), want: names({ uri: [ID] }) },
  { name: 'ok/validity/max-days', req: () => server({ dns: ['api.acme.internal'] }, { days: 397 }), want: names({ dns: ['api.acme.internal'] }) },
];

describe(`ca/issuance: accepted requests${how}`, () => {
  let ca: TestCa;
  before(async () => {
    ca = await makeTestCa({ now: NOW, offloadCrypto });
  });
  after(() => ca?.close());

  for (const c of OK_CASES) {
    test(c.name, async (t) => {
      if (c.openssl && !requireTool(t, 'openssl')) return;
      const req = c.req();
      const before = await inventoryCount(ca);
      const r = await ca.ca.issue({ now: NOW, ...req });
      assert.equal(await inventoryCount(ca), before + 1);
      const info = parseCertificate(r.certificate);
      assert.deepEqual(info.names, c.want);
      assert.deepEqual(info.eku, [req.role === 'server' ? OID.serverAuth : OID.clientAuth]);
      if (req.csr !== undefined) {
        const csr = parseCsr(readPemOrDer(req.csr as string | Uint8Array, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']));
        assert.deepEqual(info.spki, csr.spki, 'the certificate carries the CSR key');
        assert.equal(r.privateKey, undefined);
      } else {
        assert.ok(r.privateKey);
        assert.deepEqual(spkiDer(crypto.createPublicKey(r.privateKey)), info.spki);
      }
      const issuerCert = new crypto.X509Certificate(fs.readFileSync(req.role === 'server' ? ca.layout.serverCaCert : ca.layout.clientCaCert));
      assert.ok(new crypto.X509Certificate(r.certificate).verify(issuerCert.publicKey), 'signed by its role\'s intermediate');
      if (c.openssl && req.csr !== undefined && typeof req.csr === 'string') {
        // OpenSSL agrees the certificate holds the CSR's key.
        const csrFile = ca.file('ok.csr', req.csr);
        const certFile = ca.file('ok.pem', r.certificatePem);
        assert.equal(openssl(['x509', '-in', certFile, '-noout', '-pubkey']).stdout, openssl(['req', '-in', csrFile, '-noout', '-pubkey']).stdout);
      }
    });
  }
});
}

// ------------------------------------------------------------------------------------------------
// RSA public exponent 1: the signature check alone cannot see it

describe('ca/issuance: an RSA key with exponent 1 carries no proof of possession', () => {
  test('fail/e1/node-and-openssl-verify-its-signature-so-the-key-itself-is-refused', (t) => {
    const der = paddedDigestCsr(rsaSpki(randomModulus(2048), 1n), API());
    const csr = parseCsr(der);
    // Both libraries accept the "signature": with e = 1 any encoded digest is its own signature.
    const key = crypto.createPublicKey({ key: csr.spki, format: 'der', type: 'spki' });
    assert.equal(key.asymmetricKeyDetails?.publicExponent, 1n);
    assert.equal(crypto.verify('sha256', csr.signedBytes, key, csr.signature), true);
    if (requireTool(t, 'openssl')) {
      const file = path.join(csrDir, 'e1.csr');
      fs.writeFileSync(file, toPem(der, 'CERTIFICATE REQUEST'));
      const r = openssl(['req', '-in', file, '-verify', '-noout']);
      assert.equal(r.status, 0, `openssl req -verify: ${r.stderr}`);
      assert.match(r.stdout + r.stderr, /verify OK/);
    }
    // So mutual refuses the key before it looks at the signature, in every caller of verifyCsr too
    // (the offline intermediate signing does not go through the authority).
    assert.throws(() => verifyCsr(csr), (e) => assertCode(e, 'KEY_WEAK'));
    return assert.rejects(verifyCsrOffloaded(csr), (e) => assertCode(e, 'KEY_WEAK'));
  });
});

// ------------------------------------------------------------------------------------------------
// The CSR parser against @peculiar/asn1-csr

interface Reference {
  spki: Buffer;
  signedBytes: Buffer;
  signatureOid: string;
  signature: Buffer;
  commonName?: string;
  names: SubjectAltNames;
  requestedEku: string[];
  requestsCa: boolean;
}

/** What @peculiar/asn1-csr reads from a CSR, in the shape of mutual's ParsedCsr. */
function reference(der: Buffer): Reference {
  const req = AsnConvert.parse(der, CertificationRequest);
  const info = req.certificationRequestInfo;
  const out: Reference = {
    spki: Buffer.from(AsnConvert.serialize(info.subjectPKInfo)),
    signedBytes: Buffer.from(AsnConvert.serialize(info)),
    signatureOid: req.signatureAlgorithm.algorithm,
    signature: Buffer.from(req.signature),
    names: names({}),
    requestedEku: [],
    requestsCa: false,
  };
  for (const rdn of AsnConvert.parse(AsnConvert.serialize(info.subject), Name)) {
    for (const atv of rdn) if (atv.type === OID.commonName) out.commonName = atv.value.toString();
  }
  for (const attr of info.attributes ?? []) {
    if (attr.type !== OID.extensionRequest) continue;
    for (const ext of AsnConvert.parse(attr.values[0], Extensions)) {
      const value = ext.extnValue.buffer;
      if (ext.extnID === OID.subjectAltName) {
        for (const gn of AsnConvert.parse(value, SubjectAlternativeName)) {
          if (gn.dNSName !== undefined) out.names.dns.push(gn.dNSName);
          if (gn.uniformResourceIdentifier !== undefined) out.names.uri.push(gn.uniformResourceIdentifier);
          if (gn.iPAddress !== undefined) out.names.ip.push(gn.iPAddress);
        }
      } else if (ext.extnID === OID.extKeyUsage) {
        out.requestedEku.push(...AsnConvert.parse(value, ExtendedKeyUsage));
      } else if (ext.extnID === OID.basicConstraints) {
        out.requestsCa = AsnConvert.parse(value, BasicConstraints).cA;
      }
    }
  }
  return out;
}

const CROSS_CHECK: { name: string; openssl?: boolean; csr: () => Buffer }[] = [
  { name: 'ok/cross-check/openssl-p256-dns-ip', openssl: true,
    csr: () => readPemOrDer(opensslCsr({ cn: 'api.acme.internal', addext: ['subjectAltName=DNS:api.acme.internal,DNS:localhost,IP:127.0.0.1,IP:::1'] }), ['CERTIFICATE REQUEST']) },
  { name: 'ok/cross-check/openssl-rsa2048-uri', openssl: true,
    csr: () => readPemOrDer(opensslCsr({ key: 'rsa2048', cn: 'payments', addext: [`subjectAltName=URI:${ID}`] }), ['CERTIFICATE REQUEST']) },
  { name: 'ok/cross-check/openssl-ed25519-with-eku-and-ca', openssl: true,
    csr: () => readPemOrDer(opensslCsr({ key: 'ed25519', addext: ['subjectAltName=DNS:api.acme.internal', 'extendedKeyUsage=serverAuth,clientAuth', 'basicConstraints=critical,CA:TRUE'] }), ['CERTIFICATE REQUEST']) },
  { name: 'ok/cross-check/openssl-no-extensions', openssl: true, csr: () => readPemOrDer(opensslCsr({ cn: 'bare' }), ['CERTIFICATE REQUEST']) },
  { name: 'ok/cross-check/own-builder-all-name-types',
    csr: () => ownCsr(names({ dns: ['a.acme.internal', 'b.acme.internal'], ip: ['127.0.0.2', '::1'], uri: [ID] }), { cn: 'svc' }) },
  { name: 'ok/cross-check/own-builder-ca-request', csr: () => ownCsr(names({}), { ca: true, cn: 'Acme Server CA' }) },
];

describe('ca/issuance: the CSR parser agrees with @peculiar/asn1-csr', () => {
  for (const c of CROSS_CHECK) {
    test(c.name, (t: TestContext) => {
      if (c.openssl && !requireTool(t, 'openssl')) return;
      const der = c.csr();
      const ours = parseCsr(der);
      const ref = reference(der);
      assert.deepEqual(ours.spki, ref.spki);
      assert.deepEqual(ours.signedBytes, ref.signedBytes);
      assert.equal(ours.signatureOid, ref.signatureOid);
      assert.deepEqual(ours.signature, ref.signature);
      assert.equal(ours.commonName, ref.commonName);
      assert.deepEqual(ours.names.dns, ref.names.dns);
      assert.deepEqual(ours.names.uri, ref.names.uri);
      assert.deepEqual(ours.names.ip.map((ip) => ipToBytes(ip)), ref.names.ip.map((ip) => ipToBytes(ip)));
      assert.deepEqual(ours.requestedEku, ref.requestedEku);
      assert.equal(ours.requestsCa, ref.requestsCa);
    });
  }
});

// ------------------------------------------------------------------------------------------------
// The lint, directly

describe('ca/issuance: lintCertificate rules', () => {
  let ca: TestCa;
  let key: crypto.KeyObject;
  before(async () => {
    ca = await makeTestCa({ now: NOW });
    key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  });
  after(() => ca?.close());

  const base = (role: 'server' | 'client', over: Partial<CertificateFields> = {}): CertificateFields => ({
    serial: newSerial(),
    notBefore: NOW,
    notAfter: new Date(NOW.getTime() + 90 * DAY),
    subject: subjectFor(role === 'server' ? 'api.acme.internal' : 'payments'),
    spki: spkiDer(key),
    names: role === 'server' ? names({ dns: ['api.acme.internal'], ip: ['127.0.0.1'] }) : names({ uri: [ID] }),
    ...over,
  });
  const serial = (bytes: number[]) => Buffer.from(bytes.concat(Array(Math.max(0, 16 - bytes.length)).fill(0x11)));

  type LintCase = {
    name: string;
    role: Role;
    fields?: () => Partial<CertificateFields>;
    issuer?: (ca: TestCa) => LintIssuer;
    key?: () => crypto.KeyObject;
    /** A hand-made SubjectPublicKeyInfo (keys no one holds the private half of). */
    spki?: () => Buffer;
    rule?: LintRule;
  };
  const CASES: LintCase[] = [
    { name: 'ok/lint/server', role: 'server' },
    { name: 'ok/lint/client', role: 'client' },
    { name: 'ok/lint/server-ed25519', role: 'server', key: () => crypto.generateKeyPairSync('ed25519').publicKey },
    { name: 'ok/lint/server-rsa2048', role: 'server', key: () => crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey },
    { name: 'ok/lint/notAfter-equals-issuer-notAfter', role: 'server', fields: () => ({ notAfter: ca.ca.server.info.notAfter }) },
    { name: 'fail/lint/serial-15-bytes', role: 'server', fields: () => ({ serial: serial([0x40]).subarray(1) }), rule: 'serial-format' },
    { name: 'fail/lint/serial-17-bytes', role: 'server', fields: () => ({ serial: Buffer.concat([serial([0x40]), Buffer.from([1])]) }), rule: 'serial-format' },
    { name: 'fail/lint/serial-negative', role: 'server', fields: () => ({ serial: serial([0x80]) }), rule: 'serial-format' },
    { name: 'fail/lint/serial-leading-zero', role: 'server', fields: () => ({ serial: serial([0x00, 0x40]) }), rule: 'serial-format' },
    { name: 'fail/lint/serial-empty', role: 'client', fields: () => ({ serial: Buffer.alloc(0) }), rule: 'serial-format' },
    { name: 'fail/lint/notBefore-fractional-seconds', role: 'server', fields: () => ({ notBefore: new Date(NOW.getTime() + 500) }), rule: 'time-fractional' },
    { name: 'fail/lint/notAfter-fractional-seconds', role: 'client', fields: () => ({ notAfter: new Date(NOW.getTime() + DAY + 1) }), rule: 'time-fractional' },
    { name: 'fail/lint/notAfter-before-notBefore', role: 'server', fields: () => ({ notAfter: new Date(NOW.getTime() - 1000) }), rule: 'validity-order' },
    { name: 'fail/lint/notAfter-equals-notBefore', role: 'server', fields: () => ({ notAfter: NOW }), rule: 'validity-order' },
    { name: 'fail/lint/notAfter-past-issuer', role: 'server', fields: () => ({ notAfter: new Date(ca.ca.server.info.notAfter.getTime() + 1000) }), rule: 'validity-outside-issuer' },
    { name: 'fail/lint/notBefore-before-issuer', role: 'client', fields: () => ({ notBefore: new Date(ca.ca.client.info.notBefore.getTime() - 1000) }), rule: 'validity-outside-issuer' },
    { name: 'fail/lint/server-from-client-ca', role: 'server', issuer: (c) => c.ca.client.lint, rule: 'issuer-role' },
    { name: 'fail/lint/client-from-server-ca', role: 'client', issuer: (c) => c.ca.server.lint, rule: 'issuer-role' },
    { name: 'fail/lint/server-from-root', role: 'server', issuer: (c) => ({ ...c.ca.server.lint, role: 'root', constraints: undefined }), rule: 'issuer-role' },
    { name: 'fail/lint/server-ca-from-server-ca', role: 'server-ca', issuer: (c) => c.ca.server.lint, rule: 'issuer-role' },
    { name: 'fail/lint/server-without-names', role: 'server', fields: () => ({ names: names({}) }), rule: 'san-missing' },
    { name: 'fail/lint/server-names-undefined', role: 'server', fields: () => ({ names: undefined }), rule: 'san-missing' },
    { name: 'fail/lint/server-with-only-uri', role: 'server', fields: () => ({ names: names({ uri: [ID] }) }), rule: 'san-missing' },
    { name: 'fail/lint/client-without-identity', role: 'client', fields: () => ({ names: names({}) }), rule: 'san-missing' },
    { name: 'fail/lint/client-with-two-identities', role: 'client', fields: () => ({ names: names({ uri: [ID, `${ID}2`] }) }), rule: 'san-missing' },
    { name: 'fail/lint/server-with-identity', role: 'server', fields: () => ({ names: names({ dns: ['api.acme.internal'], uri: [ID] }) }), rule: 'eku-role' },
    { name: 'fail/lint/client-with-dns', role: 'client', fields: () => ({ names: names({ dns: ['api.acme.internal'], uri: [ID] }) }), rule: 'eku-role' },
    { name: 'fail/lint/dns-outside-constraints', role: 'server', fields: () => ({ names: names({ dns: ['evil.example.com'] }) }), rule: 'name-constraints' },
    { name: 'fail/lint/ip-outside-constraints', role: 'server', fields: () => ({ names: names({ dns: ['api.acme.internal'], ip: ['10.0.0.5'] }) }), rule: 'name-constraints' },
    { name: 'fail/lint/uri-outside-constraints', role: 'client', fields: () => ({ names: names({ uri: ['spiffe://other.internal/prod/payments'] }) }), rule: 'name-constraints' },
    { name: 'ok/lint/rsa-2048-exponent-65537-hand-made', role: 'server', spki: () => rsaSpki(realModulus(), 65537n) },
    { name: 'ok/lint/rsa-exponent-2^256-1', role: 'server', spki: () => rsaSpki(realModulus(), 2n ** 256n - 1n) },
    { name: 'fail/lint/rsa-1024-key', role: 'server', key: () => crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey, rule: 'rsa-modulus-size' },
    { name: 'fail/lint/rsa-8192-modulus', role: 'server', spki: () => rsaSpki(randomModulus(8192), 65537n), rule: 'rsa-modulus-size' },
    { name: 'fail/lint/rsa-2047-bit-modulus', role: 'server', spki: () => rsaSpki(randomModulus(2047), 65537n), rule: 'rsa-modulus-size' },
    { name: 'fail/lint/rsa-3001-bit-modulus-not-whole-bytes', role: 'server', spki: () => rsaSpki(randomModulus(3001), 65537n), rule: 'rsa-modulus-size' },
    { name: 'fail/lint/rsa-exponent-1', role: 'server', spki: () => rsaSpki(realModulus(), 1n), rule: 'rsa-exponent' },
    { name: 'fail/lint/rsa-exponent-3', role: 'client', spki: () => rsaSpki(realModulus(), 3n), rule: 'rsa-exponent' },
    { name: 'fail/lint/rsa-exponent-even', role: 'server', spki: () => rsaSpki(realModulus(), 65538n), rule: 'rsa-exponent' },
    { name: 'fail/lint/rsa-exponent-2^256+1', role: 'server', spki: () => rsaSpki(realModulus(), 2n ** 256n + 1n), rule: 'rsa-exponent' },
    { name: 'fail/lint/rsa-modulus-even', role: 'server', spki: () => {
      const m = Buffer.from(realModulus());
      m[m.length - 1] &= 0xfe;
      return rsaSpki(m, 65537n);
    }, rule: 'rsa-modulus-factors' },
    { name: 'fail/lint/rsa-modulus-divisible-by-3', role: 'server', spki: () => rsaSpki(modulusWithFactor3(), 65537n), rule: 'rsa-modulus-factors' },
    { name: 'fail/lint/rsa-modulus-divisible-by-751', role: 'server', spki: () => {
      let n = BigInt('0x' + realModulus().toString('hex'));
      n -= n % 751n;
      if (n % 2n === 0n) n += 751n;
      return rsaSpki(Buffer.from(n.toString(16), 'hex'), 65537n);
    }, rule: 'rsa-modulus-factors' },
    { name: 'fail/lint/secp256k1-key', role: 'server', key: () => crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey, rule: 'key-weak' },
    { name: 'fail/lint/x25519-key', role: 'client', key: () => crypto.generateKeyPairSync('x25519').publicKey, rule: 'key-weak' },
    { name: 'fail/lint/issuer-signs-sha1', role: 'server', issuer: (c) => ({ ...c.ca.server.lint, signatureOid: OID.sha1WithRSAEncryption }), rule: 'signature-sha1' },
  ];

  for (const c of CASES) {
    test(c.name, () => {
      const leafRole = c.role === 'client' ? 'client' : 'server';
      const issuer = c.issuer ? c.issuer(ca) : (c.role === 'client' ? ca.ca.client.lint : ca.ca.server.lint);
      const fields = base(leafRole, { spki: c.spki ? c.spki() : spkiDer(c.key ? c.key() : key), ...(c.fields?.() ?? {}) });
      if (!c.rule) {
        lintCertificate(c.role, fields, issuer);
        return;
      }
      assert.throws(() => lintCertificate(c.role, fields, issuer), (e) => assertCode(e, 'LINT_FAILED', c.rule));
    });
  }

  test('ok/lint/issued-certificates-pass-their-own-lint-when-re-read', async () => {
    // What the CA signs satisfies the lint when its fields are read back from the DER.
    for (const req of [server({ dns: ['api.acme.internal'], ip: ['::1'] }), client({ uri: [ID] })]) {
      const r = await ca.ca.issue({ ...req, now: new Date(NOW.getTime() + 3 * DAY + 123) });
      const info = parseCertificate(r.certificate);
      const fields: CertificateFields = { serial: info.serialBytes, notBefore: info.notBefore, notAfter: info.notAfter, subject: info.subjectName, spki: info.spki, names: info.names };
      lintCertificate(req.role, fields, ca.ca.issuerFor(req.role).lint);
    }
  });
});

