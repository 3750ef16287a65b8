/**
 * A root rollover seen by an SDK server created with a trust bundle FILE (issue 17): the bundle
 * moves from {old} to {old,new} to {new} while the server runs; clients with leaves under the old
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
import { makeRollover, rootsPem, verifyStrict, type Rollover } from '../helpers/rollover.ts';
import { until } from '../helpers/wait.ts';

let ro: Rollover;
let server: MtlsServer;
let identity: IdentitySource;
let url: string;
let bundleFile: string;
let serverTrust: string;
const clients: Record<'old' | 'new' | 'newCross', Credential> = {} as never;
let reloads = 0;
let failures = 0;
const onReloaded = () => void reloads++;
const onFailed = () => void failures++;

before(async () => {
  ro = await makeRollover();
  diagnostics.subscribe('mutual:sdk:trust-reloaded', onReloaded);
  diagnostics.subscribe('mutual:sdk:trust-reload-failed', onFailed);
  const sc = await ro.old.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'server');
  identity = loadIdentity({ certFile: sc.fullchainFile, keyFile: sc.keyFile, watch: false });
  clients.old = await ro.old.issue('client', names({ uri: [id('prod/old')] }), 'old-client');
  clients.new = await ro.new.issue('client', names({ uri: [id('prod/new')] }), 'new-client');
  clients.newCross = { ...clients.new, fullchain: clients.new.fullchain + ro.newByOld };
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

    const both = rootsPem([{ pem: ro.old.root, retireAt: new Date(Date.now() + 86_400_000) }, { pem: ro.new.root }]);
    await swap(both, 'reloaded');
    await expectClients(ro.old.root + ro.new.root, { old: true, new: true, newCross: true });

    await swap(rootsPem([{ pem: ro.new.root }]), 'reloaded');
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
