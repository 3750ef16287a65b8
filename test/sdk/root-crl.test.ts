/**
 * The verifier reads the root's CRL: a client CA revoked there refuses its leaves (CERT_REVOKED
 * naming the client CA); a root CRL that does not list it, or a stale one, changes nothing; a CRL
 * of a root the verifier does not trust is refused. Real certificates and real root CRLs
 * (`renewRootCrl`, the `mutual offline crl` path).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { makePki, keepAliveClient, names, id, type Pki } from './fixtures.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { renewRootCrl } from '../../src/ca/offline.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { revocationUrls } from '../../src/core/cert-urls.ts';
import { PeerVerifier, createServer, loadIdentity } from '../../src/sdk/index.ts';
import { isMutualError, type MutualError } from '../../src/core/errors.ts';

const DAY = 86_400_000;
let pki: Pki;
let other: Pki;
let leaf: Buffer;
let clientCrl: Buffer;
let rootCrlClean: Buffer;
let rootCrlRevoking: Buffer;
let rootCrlStale: Buffer;

before(async () => {
  pki = await makePki({ url: 'http://127.0.0.1:1' });
  other = await makePki({ name: 'Other Test' });
  const c = await pki.issue('client', names({ uri: [id('prod/orders')] }), 'orders');
  leaf = new X509Certificate(c.cert).raw;
  clientCrl = await pki.crl();
  const now = new Date();
  // In this order: a root CRL's revocations stay in every later one.
  rootCrlClean = await renewRootCrl({ offlineDir: pki.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now });
  rootCrlRevoking = await renewRootCrl({ offlineDir: pki.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: pki.clientCa, reason: 'keyCompromise' }, now });
  rootCrlStale = await renewRootCrl({ offlineDir: pki.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: new Date(now.getTime() - 400 * DAY) });
});
after(async () => {
  await pki.close();
  await other.close();
});

const verifier = () => new PeerVerifier({ clientCas: pki.clientCa, roots: pki.root, revocation: { ocsp: false, crlUrls: ['http://127.0.0.1:1/none.crl'] } });
const errorOf = async (f: () => unknown): Promise<MutualError | 'ok'> => {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (isMutualError(e)) return e;
    throw e;
  }
};

test('fail/a root CRL listing the client CA refuses its leaf: CERT_REVOKED naming the client CA', async () => {
  const v = verifier();
  v.loadCrl(clientCrl);
  assert.equal((await errorOf(() => v.verify({ leaf, authorized: true }))), 'ok', 'accepted before the root CRL');
  const st = v.loadCrl(rootCrlRevoking, 'root.crl');
  const root = parseCertificate(new X509Certificate(pki.root).raw);
  assert.equal(st.issuer, root.subject);
  assert.equal(st.entries, 1);
  assert.equal(st.fresh, true);
  const e = await errorOf(() => v.verify({ leaf, authorized: true }));
  assert.notEqual(e, 'ok');
  const err = e as MutualError;
  assert.equal(err.code, 'CERT_REVOKED');
  const ca = parseCertificate(new X509Certificate(pki.clientCa).raw);
  assert.ok(String(err.fields.detail).includes(ca.serial), String(err.fields.detail));
  assert.ok(String(err.fields.detail).includes(ca.subject), String(err.fields.detail));
});

test('ok/a root CRL that does not list the client CA accepts its leaf', async () => {
  const v = verifier();
  v.loadCrl(clientCrl);
  assert.equal(v.loadCrl(rootCrlClean).entries, 0);
  const idn = await v.verify({ leaf, authorized: true });
  assert.equal(idn.spiffeId, id('prod/orders'));
});

test('fail/a stale root CRL that lists the client CA still refuses it (a revocation is final, as for leaves)', async () => {
  const v = verifier();
  v.loadCrl(clientCrl);
  const st = v.loadCrl(rootCrlStale);
  assert.equal(st.fresh, false);
  assert.equal(st.entries, 1, 'the stale CRL does list the client CA');
  assert.equal(((await errorOf(() => v.verify({ leaf, authorized: true }))) as MutualError).code, 'CERT_REVOKED');
});

test('fail/a root CRL is refused by a verifier that has no roots, and a CRL of an unknown root by one that has: CRL_BAD_SIGNATURE', async () => {
  const noRoots = new PeerVerifier({ clientCas: pki.clientCa, revocation: { ocsp: false, crlUrls: ['http://127.0.0.1:1/none.crl'] } });
  assert.equal(((await errorOf(() => noRoots.loadCrl(rootCrlRevoking))) as MutualError).code, 'CRL_BAD_SIGNATURE');
  const otherRootCrl = await renewRootCrl({ offlineDir: other.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: new Date() });
  const v = verifier();
  assert.equal(((await errorOf(() => v.loadCrl(otherRootCrl))) as MutualError).code, 'CRL_BAD_SIGNATURE');
  v.loadCrl(clientCrl);
  assert.equal(await errorOf(() => v.verify({ leaf, authorized: true })), 'ok', 'nothing changed');
});

test('ok/the client CA\'s CRL distribution point (the root\'s CRL) is learned when the client CAs are set', () => {
  const urls = revocationUrls(new X509Certificate(pki.clientCa).raw).crl;
  assert.ok(urls.length > 0, 'the client CA names its root\'s CRL');
  const v = new PeerVerifier({ clientCas: pki.clientCa, roots: pki.root, revocation: { ocsp: false } });
  for (const u of urls) assert.ok(v.learnedCrlUrls().includes(u), `${u} learned`);
});

test('ok/the open connections of a leaf under a client CA its root revokes are closed when the root CRL arrives', { timeout: 30_000 }, async () => {
  const srv = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'srv-close');
  const identity = loadIdentity({ certFile: srv.fullchainFile, keyFile: srv.keyFile, caFile: pki.bundleFile, watch: false });
  const server = await createServer({ identity, ca: pki.root, clientCas: pki.clientCa, revocation: { ocsp: false, crlUrls: ['http://127.0.0.1:1/none.crl'] } }, (_req, res) => res.end('ok'));
  server.verifier.loadCrl(clientCrl);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const victim = await pki.issue('client', names({ uri: [id('prod/victim')] }), 'victim');
  const client = keepAliveClient(server, pki.root, victim);
  try {
    assert.equal(await client.get(), 200);
    const socket = client.socket();
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    server.verifier.loadCrl(rootCrlRevoking, 'root.crl');
    await closed;
    assert.equal(socket.destroyed, true);
  } finally {
    client.close();
    await new Promise<void>((r) => server.close(() => r()));
    identity.close();
  }
});
