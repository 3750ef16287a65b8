/**
 * The edge-certificate set of issue 13, signed with the real client CA key where a real attacker
 * would need it, presented over real TLS to a running `mutual gateway` and to an SDK server, both
 * configured as the docs say (trust: the root only; the client sends leaf + client CA). Each is refused
 * with its own code; the valid leaf passes everywhere. `openssl verify -x509_strict -purpose sslclient`
 * is the second opinion on the same files.
 *
 * Also RFC 9440 (item 2): with only the root in trust.ca, Client-Cert-Chain reaches the backend with
 * the client CA the client sent.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { startHarness, type Harness, type Echo } from '../gateway/harness.ts';
import { request, request2, names, id, UNKNOWN_EXTENSION_OID, type Credential } from '../sdk/fixtures.ts';
import { createServer, loadIdentity, peerIdentity, type MtlsServer, type IdentitySource } from '../../src/sdk/index.ts';
import { formatClientCertChain } from '../../src/sdk/xfcc.ts';
import { OID } from '../../src/core/oids.ts';
import { verify, describeVerify } from './support.ts';
import { requireTool } from '../helpers/tools.ts';

const DAY = 86_400_000;
/** The instant the certificates are made around, once the CA exists (they keep days of margin; nothing waits on them). */
let T: Date;
const at = (days: number) => new Date(T.getTime() + days * DAY);
/** Lets a 1024-bit RSA key be loaded and presented by the test client (the servers keep their defaults). */
const WEAK_CIPHERS = 'DEFAULT@SECLEVEL=0';

let h: Harness;
let sdk: MtlsServer;
let sdkIdentity: IdentitySource;
let sdkUrl: string;
let rootFile: string;

interface Edge {
  name: string;
  code: string;
  /** What `openssl verify -x509_strict -purpose sslclient` says ('accept' where mutual is stricter, with why). */
  openssl: 'refuse' | 'accept';
  cred: Credential;
  ciphers?: string;
}
const edges: Edge[] = [];
let valid: Credential;

before(async () => {
  // As docs/gateway.md configures it: the root alone in trust.ca; clients send their client CA.
  h = await startHarness((c) => {
    const trust = c.trust as { ca: string; clientCas: string };
    c.trust = { ...trust, ca: path.join(path.dirname(trust.ca), 'root.pem') };
  });
  const pki = h.pki;
  T = new Date(Math.floor(Date.now() / 1000) * 1000);
  rootFile = pki.rootFile;
  assert.equal(fs.readFileSync(rootFile, 'utf8'), pki.root);
  sdkIdentity = loadIdentity({ certFile: h.gwServer.fullchainFile, keyFile: h.gwServer.keyFile, caFile: rootFile, watch: false });
  sdk = await createServer({ identity: sdkIdentity, ca: pki.root, clientCas: pki.clientCa, revocation: { crlUrls: [h.crl.url] } }, (req, res) => {
    res.end(JSON.stringify({ spiffeId: peerIdentity(req)?.spiffeId }));
  });
  await new Promise<void>((r) => sdk.listen(0, '127.0.0.1', r));
  sdkUrl = `https://127.0.0.1:${(sdk.address() as AddressInfo).port}/`;

  valid = await pki.issue('client', names({ uri: [id('prod/edge-valid')] }), 'edge-valid');
  const expiredCopy = await pki.clientCaCopy({ key: 'client', signedBy: 'root', notBefore: at(-30), notAfter: at(-1) });
  const lookAlike = await pki.clientCaCopy({ key: 'new', signedBy: 'self', notBefore: at(-1), notAfter: at(365) });
  let n = 0;
  const forge = (o: Partial<Parameters<typeof pki.forge>[0]>) => {
    const name = `edge-${++n}`;
    return pki.forge({ by: 'client', eku: [OID.clientAuth], names: names({ uri: [id(`prod/${name}`)] }), notBefore: at(-1), notAfter: at(30), name, ...o });
  };
  const withExpiredCopy = (c: Credential): Credential => ({ ...c, fullchain: c.cert + expiredCopy.pem });
  edges.push(
    // OpenSSL's purpose check passes a certificate without EKU (DESIGN.md, "Facts"): mutual does not.
    { name: 'no EKU', code: 'CERT_WRONG_EKU', openssl: 'accept', cred: forge({ eku: [] }) },
    { name: 'serverAuth only', code: 'CERT_WRONG_EKU', openssl: 'refuse', cred: forge({ eku: [OID.serverAuth] }) },
    { name: 'anyExtendedKeyUsage only', code: 'CERT_WRONG_EKU', openssl: 'refuse', cred: forge({ eku: ['2.5.29.37.0'] }) },
    // OpenSSL lets a CA certificate authenticate a TLS client (the sslclient purpose looks at EKU/KU only).
    { name: 'CA:TRUE', code: 'CERT_IS_CA', openssl: 'accept', cred: forge({ ca: true }) },
    { name: 'expired', code: 'CERT_EXPIRED', openssl: 'refuse', cred: forge({ notBefore: at(-30), notAfter: at(-2) }) },
    { name: 'not yet valid', code: 'CERT_NOT_YET_VALID', openssl: 'refuse', cred: forge({ notBefore: at(2), notAfter: at(30) }) },
    { name: 'foreign trust domain', code: 'CERT_NAME_NOT_PERMITTED', openssl: 'refuse', cred: forge({ names: names({ uri: ['spiffe://evil.example/prod/edge'] }) }) },
    { name: 'unknown critical extension', code: 'CERT_CRITICAL_EXTENSION', openssl: 'refuse', cred: forge({ critical: [UNKNOWN_EXTENSION_OID] }) },
    { name: 'issued by the server CA', code: 'CERT_ISSUER_NOT_ALLOWED', openssl: 'refuse', cred: forge({ by: 'server' }) },
    { name: 'RSA-1024', code: 'CERT_WEAK', openssl: 'refuse', cred: forge({ key: 'rsa1024' }), ciphers: WEAK_CIPHERS },
    { name: 'look-alike CA (same name, other key)', code: 'CERT_BAD_SIGNATURE', openssl: 'refuse', cred: forge({ issuer: { context: lookAlike.issuer!, chainPem: lookAlike.pem } }) },
    { name: 'valid leaf sent with an expired copy of its issuer', code: 'CERT_CHAIN_EXPIRED', openssl: 'refuse', cred: withExpiredCopy(forge({})) },
    // The issue's case: the expired copy used to hide the critical extension (200 from both servers).
    { name: 'unknown critical extension sent with an expired copy of its issuer', code: 'CERT_CRITICAL_EXTENSION', openssl: 'refuse', cred: withExpiredCopy(forge({ critical: [UNKNOWN_EXTENSION_OID] })) },
  );
});

after(async () => {
  await new Promise<void>((r) => {
    sdk.close(() => r());
    (sdk as unknown as { closeAllConnections(): void }).closeAllConnections();
  });
  sdkIdentity.close();
  await h.close();
});

const targets = [
  { name: 'gateway', url: () => `${h.gateway.url}/api/edge` },
  { name: 'sdk', url: () => sdkUrl },
];

for (const target of targets) {
  test(`ok/${target.name}: the valid leaf (leaf + client CA, root-only trust) passes`, async () => {
    const r = await request(target.url(), { ca: h.pki.root, cert: valid.fullchain, key: valid.key });
    assert.equal(r.status, 200, r.body);
  });

  test(`fail/${target.name}: each edge certificate is refused with its own code`, async () => {
    const got: Record<string, string> = {};
    const want: Record<string, string> = {};
    for (const e of edges) {
      const r = await request(target.url(), { ca: h.pki.root, cert: e.cred.fullchain, key: e.cred.key, ...(e.ciphers ? { ciphers: e.ciphers } : {}) });
      got[e.name] = `${r.status} ${r.json?.code ?? r.body.slice(0, 80)}`;
      want[e.name] = `495 ${e.code}`;
    }
    assert.deepEqual(got, want);
  });
}

test('ok/openssl verify -x509_strict -purpose sslclient: the second opinion on the same files', (t) => {
  if (!requireTool(t, 'openssl')) return;
  const dir = fs.mkdtempSync(path.join(h.dir, 'edge-'));
  const judge = (c: Credential, name: string) => {
    const leaf = path.join(dir, `${name}.leaf.pem`);
    const sent = path.join(dir, `${name}.chain.pem`);
    fs.writeFileSync(leaf, c.cert);
    fs.writeFileSync(sent, c.fullchain.slice(c.cert.length));
    // At the security level Node's TLS servers apply (OpenSSL 3.5's default, 2), as they would.
    return verify({ cert: leaf, purpose: 'sslclient', caFile: rootFile, untrusted: sent, at: T, authLevel: 2 });
  };
  const v = judge(valid, 'valid');
  assert.ok(v.ok, describeVerify(v));
  const got: Record<string, string> = {};
  const want: Record<string, string> = {};
  edges.forEach((e, i) => {
    got[e.name] = judge(e.cred, `edge${i}`).ok ? 'accept' : 'refuse';
    want[e.name] = e.openssl;
  });
  assert.deepEqual(got, want);
});

test('ok/RFC 9440: with only the root in trust.ca the backend gets Client-Cert-Chain with the client CA the client sent', async () => {
  const r = await request(`${h.gateway.url}/api/chain`, { ca: h.pki.root, cert: valid.fullchain, key: valid.key });
  assert.equal(r.status, 200, r.body);
  const echo = JSON.parse(r.body) as Echo;
  assert.equal(echo.caller, id('prod/edge-valid'));
  const chain = formatClientCertChain([new X509Certificate(h.pki.clientCa).raw]);
  assert.equal(echo.headers['client-cert-chain'], chain);
  // The same over HTTP/2 (the request's socket is Node's HTTP/2 socket proxy).
  const r2 = await request2(h.gateway.url, { ca: h.pki.root, cert: valid.fullchain, key: valid.key, path: '/api/chain' });
  assert.equal(r2.status, 200, r2.body);
  assert.equal((JSON.parse(r2.body) as Echo).headers['client-cert-chain'], chain);
});
