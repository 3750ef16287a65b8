/**
 * The verifier checks every certificate of the path, and never accepts a chain OpenSSL refused
 * (issue 13, item 1). OpenSSL reports only its last error: an expired client CA sent by the client
 * hid a critical extension on the leaf, and the verifier, reading that error as "the leaf's time,
 * which I check myself", accepted the leaf. Here the verifier gets the chains as a TLS server hands
 * them over (authorized flag, OpenSSL's reason, the issuers of the refused chain) with a fixed clock;
 * test/interop/edge-certificates.test.ts drives the same certificates through real handshakes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto, { X509Certificate } from 'node:crypto';
import { makePki, names, id, UNKNOWN_EXTENSION_OID, type Pki, type TestCaCert } from './fixtures.ts';
import { PeerVerifier, type PeerChain } from '../../src/sdk/verifier.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { OID } from '../../src/core/oids.ts';
import { oid, seq } from '../../src/core/der.ts';
import type { Signer } from '../../src/core/signer.ts';

const DAY = 86_400_000;
/** The verifier's fixed clock: an hour after the test CA was made (set in before()). */
let NOW: Date;
const at = (days: number) => new Date(NOW.getTime() + days * DAY);

let pki: Pki;
let expiredCopy: TestCaCert;
let lookAlike: TestCaCert;
let longCopy: TestCaCert;
const der = (pem: string) => new X509Certificate(pem).raw;

before(async () => {
  pki = await makePki();
  NOW = new Date(pki.tc.ca.client.info.notBefore.getTime() + 3_600_000);
  expiredCopy = await pki.clientCaCopy({ key: 'client', signedBy: 'root', notBefore: at(-30), notAfter: at(-1) });
  lookAlike = await pki.clientCaCopy({ key: 'new', signedBy: 'self', notBefore: at(-1), notAfter: at(365) });
  // A client CA (same key) valid 20 years, past its root's 10: to see an expired root refuse.
  longCopy = await pki.clientCaCopy({ key: 'client', signedBy: 'root', notBefore: at(-1), notAfter: at(20 * 365) });
});
after(() => pki.close());

const client = ['1.3.6.1.5.5.7.3.2'];
const leafOf = (o: Partial<Parameters<Pki['forge']>[0]> = {}) =>
  der(pki.forge({ by: 'client', eku: client, names: names({ uri: [id('prod/edge')] }), notBefore: at(-1), notAfter: at(30), name: 'edge', ...o }).cert);

const codeOf = async (v: PeerVerifier, chain: PeerChain): Promise<string> => {
  try {
    await v.verify(chain);
    return 'ok';
  } catch (e) {
    return isMutualError(e) ? e.code : String(e);
  }
};

interface Case {
  name: string;
  chain: () => PeerChain;
  want: string;
  /** The verifier's clock; default NOW. */
  now?: () => Date;
  /** Configured client CAs; default the real client CA. */
  clientCas?: () => string;
}

const cases: Case[] = [
  { name: 'ok/a valid leaf OpenSSL accepted', chain: () => ({ leaf: leafOf(), authorized: true }), want: 'ok' },
  // The first finding: OpenSSL's last error is about the expired copy of the client CA.
  { name: 'fail/a valid leaf sent with an expired copy of its client CA -> CERT_CHAIN_EXPIRED', chain: () => ({ leaf: leafOf(), authorized: false, authorizationError: 'CERT_HAS_EXPIRED', issuers: [expiredCopy.der, der(pki.root)] }), want: 'CERT_CHAIN_EXPIRED' },
  { name: 'fail/an unknown critical extension hidden behind an expired client CA -> CERT_CRITICAL_EXTENSION', chain: () => ({ leaf: leafOf({ critical: [UNKNOWN_EXTENSION_OID] }), authorized: false, authorizationError: 'CERT_HAS_EXPIRED', issuers: [expiredCopy.der] }), want: 'CERT_CRITICAL_EXTENSION' },
  { name: 'fail/an OpenSSL refusal nothing here explains stays a refusal -> CERT_UNTRUSTED', chain: () => ({ leaf: leafOf(), authorized: false, authorizationError: 'CERT_HAS_EXPIRED' }), want: 'CERT_UNTRUSTED' },
  { name: 'fail/INVALID_PURPOSE on a leaf our checks pass is still a refusal -> CERT_UNTRUSTED', chain: () => ({ leaf: leafOf(), authorized: false, authorizationError: 'INVALID_PURPOSE', issuers: [der(pki.clientCa)] }), want: 'CERT_UNTRUSTED' },
  { name: 'fail/an unknown critical extension (OpenSSL: UNSPECIFIED) -> CERT_CRITICAL_EXTENSION', chain: () => ({ leaf: leafOf({ critical: [UNKNOWN_EXTENSION_OID] }), authorized: false, authorizationError: 'UNSPECIFIED' }), want: 'CERT_CRITICAL_EXTENSION' },
  { name: 'fail/an unknown critical extension even if OpenSSL let it pass -> CERT_CRITICAL_EXTENSION', chain: () => ({ leaf: leafOf({ critical: [UNKNOWN_EXTENSION_OID] }), authorized: true }), want: 'CERT_CRITICAL_EXTENSION' },
  { name: 'fail/RSA-1024 signed by the client CA -> CERT_WEAK', chain: () => ({ leaf: leafOf({ key: 'rsa1024' }), authorized: true }), want: 'CERT_WEAK' },
  { name: 'fail/a foreign trust domain, outside the client CA\'s name constraints -> CERT_NAME_NOT_PERMITTED', chain: () => ({ leaf: leafOf({ names: names({ uri: ['spiffe://evil.example/prod/edge'] }) }), authorized: true }), want: 'CERT_NAME_NOT_PERMITTED' },
  { name: 'fail/a DNS name outside the client CA\'s name constraints -> CERT_NAME_NOT_PERMITTED', chain: () => ({ leaf: leafOf({ names: names({ uri: [id('prod/edge')], dns: ['www.evil.example'] }) }), authorized: true }), want: 'CERT_NAME_NOT_PERMITTED' },
  { name: 'fail/CA:TRUE -> CERT_IS_CA', chain: () => ({ leaf: leafOf({ ca: true }), authorized: true }), want: 'CERT_IS_CA' },
  { name: 'fail/a look-alike CA (same name, other key) -> CERT_BAD_SIGNATURE', chain: () => ({ leaf: leafOf({ issuer: { context: lookAlike.issuer!, chainPem: lookAlike.pem } }), authorized: false, authorizationError: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', issuers: [lookAlike.der] }), want: 'CERT_BAD_SIGNATURE' },
  { name: 'fail/issued by the server CA -> CERT_ISSUER_NOT_ALLOWED', chain: () => ({ leaf: der(pki.forge({ by: 'server', eku: client, names: names({ uri: [id('prod/edge')] }), notBefore: at(-1), notAfter: at(30), name: 'by-server-ca' }).cert), authorized: false, authorizationError: 'INVALID_PURPOSE' }), want: 'CERT_ISSUER_NOT_ALLOWED' },
  { name: 'fail/no EKU -> CERT_WRONG_EKU', chain: () => ({ leaf: leafOf({ eku: [] }), authorized: true }), want: 'CERT_WRONG_EKU' },
  { name: 'fail/serverAuth only -> CERT_WRONG_EKU', chain: () => ({ leaf: leafOf({ eku: [OID.serverAuth] }), authorized: true }), want: 'CERT_WRONG_EKU' },
  { name: 'fail/anyExtendedKeyUsage only -> CERT_WRONG_EKU', chain: () => ({ leaf: leafOf({ eku: ['2.5.29.37.0'] }), authorized: true }), want: 'CERT_WRONG_EKU' },
  { name: 'fail/expired leaf -> CERT_EXPIRED', chain: () => ({ leaf: leafOf({ notBefore: at(-30), notAfter: at(-2) }), authorized: false, authorizationError: 'CERT_HAS_EXPIRED' }), want: 'CERT_EXPIRED' },
  { name: 'fail/not yet valid leaf -> CERT_NOT_YET_VALID', chain: () => ({ leaf: leafOf({ notBefore: at(2), notAfter: at(30) }), authorized: false, authorizationError: 'CERT_NOT_YET_VALID' }), want: 'CERT_NOT_YET_VALID' },
  // The verifier's own clock over the configured path: a client CA or root past its notAfter refuses
  // a leaf that is itself still valid (a leaf made to outlive its CA, as a forger would).
  { name: 'fail/the configured client CA has expired -> CERT_CHAIN_EXPIRED', chain: () => ({ leaf: leafOf({ notAfter: at(5 * 365) }), authorized: true }), now: () => at(3 * 365), want: 'CERT_CHAIN_EXPIRED' },
  { name: 'fail/the root the client CA chains to has expired -> CERT_CHAIN_EXPIRED', chain: () => ({ leaf: leafOf({ notAfter: at(15 * 365) }), authorized: true }), now: () => at(11 * 365), clientCas: () => longCopy.pem, want: 'CERT_CHAIN_EXPIRED' },
  { name: 'ok/the same leaf and long-lived client CA before the root expires', chain: () => ({ leaf: leafOf({ notAfter: at(15 * 365) }), authorized: true }), now: () => at(9 * 365), clientCas: () => longCopy.pem, want: 'ok' },
  { name: 'fail/an issuer in the refused chain that is not a CA -> CERT_UNTRUSTED', chain: () => ({ leaf: leafOf(), authorized: false, authorizationError: 'INVALID_CA', issuers: [leafOf()] }), want: 'CERT_UNTRUSTED' },
];

for (const c of cases) {
  test(c.name, async () => {
    const now = c.now?.() ?? NOW;
    const v = new PeerVerifier({ clientCas: c.clientCas?.() ?? pki.clientCa, roots: pki.root, revocation: { mode: 'off' }, now: () => now });
    assert.equal(await codeOf(v, c.chain()), c.want);
  });
}

test('fail/a leaf signed with ECDSA-SHA1 by a trusted client CA -> CERT_WEAK', async () => {
  // A CA this test holds the key of (the real CA's signer signs with SHA-256 only), configured as the client CA.
  const ca = lookAlike;
  const sha1: Signer = {
    publicKey: ca.issuer!.signer.publicKey,
    algorithm: { name: 'ecdsa-with-SHA1', oid: OID.ecdsaWithSHA1, hash: 'sha256', der: seq(oid(OID.ecdsaWithSHA1)) },
    sign: (tbs) => crypto.sign('sha1', tbs, ca.privateKey!),
  };
  const leaf = leafOf({ issuer: { context: { ...ca.issuer!, signer: sha1 }, chainPem: ca.pem } });
  const v = new PeerVerifier({ clientCas: ca.pem, revocation: { mode: 'off' }, now: () => NOW });
  assert.equal(await codeOf(v, { leaf, authorized: true }), 'CERT_WEAK');
  // The same CA's SHA-256 leaf is fine: the refusal is about the signature algorithm.
  assert.equal(await codeOf(v, { leaf: leafOf({ issuer: { context: ca.issuer!, chainPem: ca.pem } }), authorized: true }), 'ok');
});

test('fail/a configured client CA with a weak key (RSA-1024) vouches for nothing -> CERT_WEAK', async () => {
  const weak = await pki.clientCaCopy({ key: 'rsa1024', signedBy: 'root', notBefore: at(-1), notAfter: at(365) });
  const leaf = leafOf({ issuer: { context: weak.issuer!, chainPem: weak.pem } });
  const v = new PeerVerifier({ clientCas: weak.pem, roots: pki.root, revocation: { mode: 'off' }, now: () => NOW });
  assert.equal(await codeOf(v, { leaf, authorized: true }), 'CERT_WEAK');
});

test('ok/a refusal names the certificate of the chain it is about', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, roots: pki.root, revocation: { mode: 'off' }, now: () => NOW });
  try {
    await v.verify({ leaf: leafOf(), authorized: false, authorizationError: 'CERT_HAS_EXPIRED', issuers: [expiredCopy.der] });
    assert.fail('accepted');
  } catch (e) {
    assert.ok(isMutualError(e, 'CERT_CHAIN_EXPIRED'));
    assert.ok(e.fields.notAfter instanceof Date && e.fields.notAfter.getTime() === at(-1).getTime(), 'the expired copy\'s notAfter is carried');
  }
});

test('ok/the verified identity carries the client CA as its chain (for Client-Cert-Chain)', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, roots: pki.root, revocation: { mode: 'off' }, now: () => NOW });
  const idn = await v.verify({ leaf: leafOf(), authorized: true });
  assert.equal(idn.chain.length, 1);
  assert.ok(idn.chain[0].equals(der(pki.clientCa)));
});

test('ok/a repeat verification is served from the per-certificate cache', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, roots: pki.root, revocation: { mode: 'off' }, now: () => NOW });
  const leaf = leafOf();
  const a = await v.verify({ leaf, authorized: true });
  const b = await v.verify({ leaf, authorized: true });
  assert.equal(a, b, 'the same identity object: no re-parse, no signature check');
});
