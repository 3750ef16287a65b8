/**
 * The verifier's revocation logic: fail-closed and fail-open, a stale CRL, OCSP as the fallback
 * against a real `mutual serve`, CRL URLs learned from certificates, and closing the
 * connections of a certificate once it is revoked.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { makePki, keepAliveClient, startCrlServer, names, id, type Pki } from './fixtures.ts';
import { startCaServer, type CaServer } from '../../src/server/ca-server.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { PeerVerifier, createServer, loadIdentity, type PeerIdentity } from '../../src/sdk/index.ts';
import { isMutualError } from '../../src/core/errors.ts';

let pki: Pki;
let caServer: CaServer;
let leaf: Buffer;
let serial: string;

before(async () => {
  // The CA's URL is where its server listens, so certificates carry working CRL and OCSP URLs.
  const net = await import('node:net');
  const port = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => r(p));
    });
  });
  pki = await makePki({ url: `https://127.0.0.1:${port}` });
  caServer = await startCaServer({ ca: pki.tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port, url: `https://127.0.0.1:${port}`, logger: pino({ level: 'silent' }), rateLimit: false });
  const c = await pki.issue('client', names({ uri: [id('prod/orders')] }), 'orders');
  leaf = new (await import('node:crypto')).X509Certificate(c.cert).raw;
  serial = c.serial;
});
after(async () => {
  await caServer.close();
  await pki.close();
});

const settle = async <T>(v: T | Promise<T>): Promise<T> => v;
const codeOf = async (f: () => unknown): Promise<string> => {
  try {
    await f();
    return 'ok';
  } catch (e) {
    return isMutualError(e) ? e.code : String(e);
  }
};

test('fail/fail-closed without any revocation source -> REVOCATION_UNAVAILABLE', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, revocation: { ocsp: false, crlUrls: ['http://127.0.0.1:1/none.crl'] } });
  assert.equal(await codeOf(() => v.verify({ leaf, authorized: true })), 'REVOCATION_UNAVAILABLE');
});

test('ok/fail-open without any revocation source accepts', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, revocation: { mode: 'fail-open', ocsp: false, crlUrls: ['http://127.0.0.1:1/none.crl'] } });
  const idn = await settle(v.verify({ leaf, authorized: true }));
  assert.equal(idn.spiffeId, id('prod/orders'));
  assert.equal(idn.serial, serial);
  assert.match(idn.fingerprint, /^[0-9a-f]{64}$/);
});

test('fail/a CRL past its nextUpdate no longer counts (injected clock)', async () => {
  let now = new Date();
  const v = new PeerVerifier({ clientCas: pki.clientCa, revocation: { ocsp: false, crlUrls: ['http://127.0.0.1:1/none.crl'] }, now: () => now });
  v.loadCrl(await pki.crl());
  assert.equal(await codeOf(() => v.verify({ leaf, authorized: true })), 'ok');
  now = new Date(Date.now() + 8 * 86_400_000);
  assert.equal(v.status()[0].fresh, false);
  const code = await codeOf(() => v.verify({ leaf, authorized: true }));
  assert.ok(code === 'REVOCATION_UNAVAILABLE' || code === 'CERT_EXPIRED', code);
});

test('ok/OCSP is the fallback when no CRL is fresh: good, then revoked', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, revocation: { crlUrls: ['http://127.0.0.1:1/none.crl'] }, fetchCa: pki.root });
  const r = v.verify({ leaf, authorized: true });
  assert.ok(r instanceof Promise, 'an OCSP query is asynchronous');
  assert.equal((await r).serial, serial);
  // Cached: the second answer is immediate.
  assert.ok(!(v.verify({ leaf, authorized: true }) instanceof Promise));
  const other = await pki.issue('client', names({ uri: [id('prod/ocsp-revoked')] }), 'ocsp-revoked');
  await pki.tc.ca.revoke({ serial: other.serial, reason: 'keyCompromise' });
  await new Promise((res) => setTimeout(res, 1200)); // the CA server picks up revocations every second
  const leaf2 = new (await import('node:crypto')).X509Certificate(other.cert).raw;
  assert.equal(await codeOf(() => v.verify({ leaf: leaf2, authorized: true })), 'CERT_REVOKED');
});

test('ok/with no CRL URL configured, the URL is learned from the certificate and fetched', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa, revocation: { ocsp: false }, fetchCa: pki.root });
  await v.start();
  assert.equal(v.status()[0].fresh, false, 'nothing known before the first certificate');
  assert.equal(await codeOf(() => v.verify({ leaf, authorized: true })), 'REVOCATION_UNAVAILABLE');
  await v.refresh();
  assert.equal(v.status()[0].fresh, true);
  // The certificate names its issuing key's CRL.
  assert.match(String(v.status()[0].source), /\/crl\/client\.[0-9a-f]{16}\.crl$/);
  assert.equal(await codeOf(() => v.verify({ leaf, authorized: true })), 'ok');
  v.close();
});

test('ok/a revoked certificate\'s open connections are closed when the new CRL arrives', async () => {
  const crlServer = await startCrlServer(() => pki.crl());
  const srv = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'srv-close');
  const identity = loadIdentity({ certFile: srv.fullchainFile, keyFile: srv.keyFile, caFile: pki.bundleFile, watch: false });
  const server = await createServer({ identity, clientCas: pki.clientCa, revocation: { crlUrls: [crlServer.url] } }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const victim = await pki.issue('client', names({ uri: [id('prod/victim')] }), 'victim');
  const client = keepAliveClient(server, pki.root, victim);
  try {
    assert.equal(await client.get(), 200);
    const socket = client.socket();
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await pki.tc.ca.revoke({ serial: victim.serial });
    await server.verifier.refresh();
    await closed;
  } finally {
    client.close();
    await new Promise<void>((r) => server.close(() => r()));
    identity.close();
    await crlServer.close();
  }
});

test('ok/the identity carries SPIFFE ID, DNS, CN, serial, fingerprint, notAfter and issuer', async () => {
  const c = await pki.issue('client', names({ uri: [id('prod/full')] }), 'full');
  const v = new PeerVerifier({ clientCas: pki.clientCa, revocation: { mode: 'off' } });
  const x = new (await import('node:crypto')).X509Certificate(c.cert);
  const idn = (await settle(v.verify({ leaf: x.raw, authorized: true }))) as PeerIdentity;
  assert.equal(idn.spiffeId, id('prod/full'));
  assert.equal(idn.cn, 'full');
  assert.deepEqual(idn.dns, []);
  assert.equal(idn.issuer, pki.tc.ca.client.info.subject);
  assert.equal(idn.fingerprint, x.fingerprint256.replace(/:/g, '').toLowerCase());
  assert.equal(idn.notAfter.toISOString(), new Date(x.validTo).toISOString());
});
