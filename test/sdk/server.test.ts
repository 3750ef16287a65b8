/**
 * The SDK server end to end over real TLS: which client certificates are accepted, which are
 * refused and with which code, the allow list, peerIdentity, revocation after a CRL refresh, and
 * rotation of the server's own certificate.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { makePki, startCrlServer, request, request2, replaceFile, id, names, type Pki, type Credential } from './fixtures.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { createServer, loadIdentity, peerIdentity, type MtlsServer, type IdentitySource } from '../../src/sdk/index.ts';
import { OID } from '../../src/core/oids.ts';

let pki: Pki;
let other: TestCa;
let crlServer: Awaited<ReturnType<typeof startCrlServer>>;
let server: MtlsServer;
let serverIdentity: IdentitySource;
let url: string;
let serverCred: Credential;
const creds: Record<string, Credential> = {};

before(async () => {
  pki = await makePki();
  other = await makeTestCa();
  crlServer = await startCrlServer(() => pki.crl());
  serverCred = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'server');
  serverIdentity = loadIdentity({ certFile: serverCred.fullchainFile, keyFile: serverCred.keyFile, caFile: pki.bundleFile, pollMs: 200 });
  creds.payments = await pki.issue('client', names({ uri: [id('prod/payments')] }), 'payments');
  creds.billing = await pki.issue('client', names({ uri: [id('staging/billing')] }), 'billing');
  creds.revoked = await pki.issue('client', names({ uri: [id('prod/revoked')] }), 'revoked');
  creds.expired = pki.forge({ by: 'client', eku: [OID.clientAuth], names: names({ uri: [id('prod/old')] }), notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 3 * 86_400_000 - 3_600_000), name: 'expired' });
  creds.noEku = pki.forge({ by: 'client', eku: [], names: names({ uri: [id('prod/noeku')] }), name: 'noeku' });
  creds.serverEku = pki.forge({ by: 'client', eku: [OID.serverAuth], names: names({ uri: [id('prod/servereku')] }), name: 'servereku' });
  creds.wrongIssuer = pki.forge({ by: 'server', eku: [OID.clientAuth], names: names({ uri: [id('prod/payments')] }), name: 'wrongissuer' });
  creds.serverCert = serverCred;
  const o = await other.ca.issue({ role: 'client', names: names({ uri: [id('prod/payments')] }) });
  creds.unknownCa = { ...creds.payments, cert: o.certificatePem, fullchain: o.fullchainPem, key: o.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  server = await createServer({
    identity: serverIdentity,
    clientCas: pki.clientCa,
    allow: [id('prod/*')],
    revocation: { crlUrls: [crlServer.url], refreshMs: 60_000 },
  }, (req, res) => {
    const p = peerIdentity(req)!;
    (res as import("node:http").ServerResponse).writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ spiffeId: p.spiffeId, serial: p.serial }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  serverIdentity.close();
  await crlServer.close();
  await other.close();
  await pki.close();
});

const cases: { name: string; cred?: string; status: number; code?: string; detail?: RegExp }[] = [
  { name: 'ok/client certificate from the client CA, allowed identity', cred: 'payments', status: 200 },
  { name: 'fail/no certificate', status: 496, code: 'CERT_MISSING' },
  { name: 'fail/identity not in the allow list', cred: 'billing', status: 403, code: 'ACCESS_DENIED', detail: /staging\/billing/ },
  { name: 'fail/expired', cred: 'expired', status: 495, code: 'CERT_EXPIRED', detail: /expired 3 days ago.*serial.*mutual ca renew/ },
  { name: 'fail/no EKU', cred: 'noEku', status: 495, code: 'CERT_WRONG_EKU', detail: /no extended key usage/ },
  { name: 'fail/server EKU only', cred: 'serverEku', status: 495, code: 'CERT_WRONG_EKU', detail: /server certificate/ },
  { name: 'fail/client certificate issued by the server CA', cred: 'wrongIssuer', status: 495, code: 'CERT_ISSUER_NOT_ALLOWED' },
  { name: 'fail/server certificate offered as a client certificate', cred: 'serverCert', status: 495, code: 'CERT_ISSUER_NOT_ALLOWED' },
  // The other test CA has the same names as ours ("Acme Test Client CA") and another key: a look-alike.
  { name: 'fail/unknown CA with our client CA\'s name (a look-alike)', cred: 'unknownCa', status: 495, code: 'CERT_BAD_SIGNATURE' },
];

for (const c of cases) {
  test(c.name, async () => {
    const cred = c.cred ? creds[c.cred] : undefined;
    const r = await request(url, { ca: pki.root, cert: cred?.fullchain, key: cred?.key });
    assert.equal(r.status, c.status, r.body);
    if (c.code) {
      assert.equal(r.json?.code, c.code);
      assert.ok(r.json?.hint);
      if (c.detail) assert.match(String(r.json?.message), c.detail);
    } else {
      assert.equal(r.json?.spiffeId, id('prod/payments'));
    }
  });
}

test('fail/revoked after the CRL is refreshed, without a restart', async () => {
  const before = await request(url, { ca: pki.root, cert: creds.revoked.fullchain, key: creds.revoked.key });
  assert.equal(before.status, 200);
  await pki.tc.ca.revoke({ serial: creds.revoked.serial, reason: 'keyCompromise' });
  await server.verifier.refresh();
  const r = await request(url, { ca: pki.root, cert: creds.revoked.fullchain, key: creds.revoked.key });
  assert.equal(r.status, 495);
  assert.equal(r.json?.code, 'CERT_REVOKED');
  assert.match(String(r.json?.message), /revoked at .*keyCompromise/);
  const ok = await request(url, { ca: pki.root, cert: creds.payments.fullchain, key: creds.payments.key });
  assert.equal(ok.status, 200);
});

test('ok/the server certificate rotates from files without a restart', async () => {
  const next = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'server-next');
  const rotated = new Promise((r) => serverIdentity.once('rotated', r));
  replaceFile(serverCred.keyFile, next.key);
  replaceFile(serverCred.fullchainFile, next.fullchain);
  await rotated;
  const r = await new Promise<string>((resolve, reject) => {
    import('node:tls').then(({ default: tls }) => {
      const s = tls.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', ca: pki.root, cert: creds.payments.fullchain, key: creds.payments.key, servername: 'localhost' }, () => {
        resolve(s.getPeerX509Certificate()!.serialNumber.toLowerCase());
        s.destroy();
      });
      s.on('error', reject);
    });
  });
  assert.equal(r.replace(/^0+/, ''), next.serial);
});

test('ok/HTTP/2 server with HTTP/1.1 fallback', async () => {
  const s2 = await createServer({ identity: serverIdentity, clientCas: pki.clientCa, http2: true, revocation: { mode: 'off' } }, (req, res) => {
    res.end(`${req.httpVersion} ${peerIdentity(req)?.spiffeId}`);
  });
  await new Promise<void>((r) => s2.listen(0, '127.0.0.1', r));
  const u = `https://127.0.0.1:${(s2.address() as AddressInfo).port}`;
  try {
    const h2 = await request2(u, { ca: pki.root, cert: creds.payments.fullchain, key: creds.payments.key });
    assert.equal(h2.body, `2.0 ${id('prod/payments')}`);
    const h1 = await request(u + '/', { ca: pki.root, cert: creds.payments.fullchain, key: creds.payments.key });
    assert.equal(h1.body, `1.1 ${id('prod/payments')}`);
    const bad = await request2(u, { ca: pki.root, cert: creds.noEku.fullchain, key: creds.noEku.key });
    assert.equal(bad.status, 495);
    assert.equal(bad.json?.code, 'CERT_WRONG_EKU');
  } finally {
    await new Promise<void>((r) => s2.close(() => r()));
  }
});
