/**
 * A root rollover seen by an SDK server created with a trust bundle FILE (issue 17), made by the
 * CA's own ceremonies (root rotate, install, new intermediates, retire): the bundle moves from {old}
 * to {old,new} to {new} (the CA's ca/roots.pem) while the server runs; clients with leaves under the old
 * root, under the new one, and under the new one with the new-by-old cross-certificate in their
 * chain are accepted or refused exactly as the bundle says (and as `openssl verify -x509_strict`
 * says), without a restart; a keep-alive connection made before a change keeps working; a bundle
 * that does not parse leaves the one in force.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { createServer, loadIdentity, type MtlsServer, type IdentitySource } from '../../src/sdk/index.ts';
import { request, replaceFile, id, names, type Credential } from './fixtures.ts';
import { makeRealRollover, rootsPem, verifyStrict, type RealRollover } from '../helpers/rollover.ts';
import { until } from '../helpers/wait.ts';

let ro: RealRollover;
let server: MtlsServer;
let identity: IdentitySource;
let url: string;
let bundleFile: string;
let serverTrust: string;
let identityFiles: { cert: string; key: string };
const clients: Record<'old' | 'new' | 'newCross', Credential> = {} as never;
let reloads = 0;
let failures = 0;
const onReloaded = () => void reloads++;
const onFailed = () => void failures++;

before(async () => {
  diagnostics.subscribe('mutual:sdk:trust-reloaded', onReloaded);
  diagnostics.subscribe('mutual:sdk:trust-reload-failed', onFailed);
  // A real rollover of one CA: the server and the old client are issued before it, under the old root.
  let sc!: Credential;
  ro = await makeRealRollover(async (old) => {
    sc = await old.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'server');
    clients.old = await old.issue('client', names({ uri: [id('prod/old')] }), 'old-client');
  });
  identity = loadIdentity({ certFile: sc.fullchainFile, keyFile: sc.keyFile, watch: false });
  identityFiles = { cert: sc.fullchainFile, key: sc.keyFile };
  // During the overlap the CA's chain carries new-by-old; a client that sends only its intermediate is "new".
  const issued = await ro.new.issue('client', names({ uri: [id('prod/new')] }), 'new-client');
  assert.ok(issued.fullchain.includes(ro.newByOld), 'the CA answered with new-by-old');
  clients.newCross = issued;
  clients.new = { ...issued, fullchain: issued.cert + ro.new.clientCa };
  bundleFile = path.join(ro.dir, 'trust.pem');
  replaceFile(bundleFile, rootsPem([{ pem: ro.old.root }]));
  serverTrust = ro.old.root + ro.new.root;
  server = await createServer({
    identity, caFile: bundleFile, caPollMs: 20, clientCas: [ro.old.clientCa, ro.new.clientCa], revocation: { mode: 'off' },
  }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

after(async () => {
  diagnostics.unsubscribe('mutual:sdk:trust-reloaded', onReloaded);
  diagnostics.unsubscribe('mutual:sdk:trust-reload-failed', onFailed);
  (server as https.Server).closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  identity.close();
  await ro.close();
});

/** Writes the bundle and waits until the server has applied it (or refused it). */
async function swap(text: string, expect: 'reloaded' | 'failed'): Promise<void> {
  const [r, f] = [reloads, failures];
  replaceFile(bundleFile, text);
  await until(`the bundle change was ${expect}`, () => (expect === 'reloaded' ? reloads > r : failures > f));
}

async function expectClients(bundle: string, want: Record<keyof typeof clients, boolean>): Promise<void> {
  for (const [name, ok] of Object.entries(want) as [keyof typeof clients, boolean][]) {
    const c = clients[name];
    assert.equal(verifyStrict(ro.dir, c.cert, c.fullchain.slice(c.cert.length), bundle), ok, `openssl verify of ${name}`);
    const r = await request(url, { ca: serverTrust, cert: c.fullchain, key: c.key });
    assert.equal(r.status, ok ? 200 : 495, `${name}: ${r.body}`);
    if (!ok) assert.equal(r.json?.code, 'CERT_UNTRUSTED');
  }
}

test('ok/the bundle moves {old} -> {old,new} -> {new}: each client is accepted exactly as the bundle says, with no restart', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const keepAlive = () => new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
    const req = https.request(url, { agent, ca: serverTrust, cert: clients.old.fullchain, key: clients.old.key }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
  try {
    const oldOnly = ro.old.root;
    await expectClients(oldOnly, { old: true, new: false, newCross: true });
    assert.deepEqual(await keepAlive(), { status: 200, reused: false });

    // The CA's own ca/roots.pem after `root install`: both roots, the old one marked retire-at.
    await swap(ro.bundle(), 'reloaded');
    await expectClients(ro.old.root + ro.new.root, { old: true, new: true, newCross: true });

    await ro.retire();
    await swap(ro.bundle(), 'reloaded');
    await expectClients(ro.new.root, { old: false, new: true, newCross: true });
    // The connection made under {old} stays usable: in-flight connections keep what they had.
    assert.deepEqual(await keepAlive(), { status: 200, reused: true });
  } finally {
    agent.destroy();
  }
});

test('fail/a bundle that does not parse keeps the one in force', async () => {
  // The bundle in force is {new}, from the test above.
  await swap('# mutual-root 00\n-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n', 'failed');
  const r = await request(url, { ca: serverTrust, cert: clients.new.fullchain, key: clients.new.key });
  assert.equal(r.status, 200, r.body);
  const o = await request(url, { ca: serverTrust, cert: clients.old.fullchain, key: clients.old.key });
  assert.equal(o.json?.code, 'CERT_UNTRUSTED');
});

test('ok/a server without ca follows the trust bundle of its identity (loadIdentity caFile) when it changes', async () => {
  const caFile = path.join(ro.dir, 'identity-trust.pem');
  replaceFile(caFile, ro.old.root);
  const id2 = loadIdentity({ certFile: identityFiles.cert, keyFile: identityFiles.key, caFile, pollMs: 20 });
  const s2 = await createServer({ identity: id2, clientCas: [ro.old.clientCa, ro.new.clientCa], revocation: { mode: 'off' } }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => s2.listen(0, '127.0.0.1', r));
  const u = `https://127.0.0.1:${(s2.address() as AddressInfo).port}/`;
  const call = (c: Credential) => request(u, { ca: serverTrust, cert: c.fullchain, key: c.key });
  try {
    assert.deepEqual([(await call(clients.old)).status, (await call(clients.new)).json?.code], [200, 'CERT_UNTRUSTED']);
    const n = reloads;
    replaceFile(caFile, ro.new.root);
    await until('the identity rotated with the new bundle', () => reloads > n);
    assert.deepEqual([(await call(clients.old)).json?.code, (await call(clients.new)).status], ['CERT_UNTRUSTED', 200]);
  } finally {
    (s2 as https.Server).closeAllConnections();
    await new Promise<void>((r) => s2.close(() => r()));
    id2.close();
  }
});
