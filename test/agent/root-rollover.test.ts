/**
 * The agent through a root rollover (issue 17), against a real CA server in this process whose
 * /roots.json (and, once the old root is gone, /roots.pem and intermediates) the test answers in
 * the contract's format: the trust bundle moves from {old} to {old,new} to {new}; an unknown root
 * without a valid cross-certificate is refused (CA_UNTRUSTED, bundle unchanged); a certificate
 * under a root marked retiring, or whose intermediate is on the root CRL, is renewed at once, once. The clock is the test's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent } from '../../src/agent/agent.ts';
import { readCertificateDers } from '../../src/core/pem.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { renewRootCrl } from '../../src/ca/offline.ts';
import { crossCertificate, fingerprint, rootsJson, rootsPem, verifyStrict } from '../helpers/rollover.ts';
import { hostDir, manifestFor, serverManifest, startAgentCa, testClock, type AgentTestCa } from './harness.ts';

type Answers = Record<string, string>;

/** Answers the paths in `answers()` on the CA server's listener; every other request goes to the CA. */
function answerOn(ca: AgentTestCa, answers: () => Answers): void {
  const server = ca.srv.server;
  const original = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const body = answers()[req.url ?? ''];
    if (body === undefined) {
      for (const l of original) l.call(server, req, res);
      return;
    }
    res.writeHead(200, { 'content-type': req.url!.endsWith('.json') ? 'application/json' : 'application/x-pem-file' });
    res.end(body);
  });
}

const fingerprintsIn = (file: string): string[] => readCertificateDers(fs.readFileSync(file, 'utf8')).map((d) => crypto.createHash('sha256').update(d).digest('hex')).sort();

async function rollover() {
  const clock = testClock();
  const ca = await startAgentCa({ clock });
  // The new root has the old one's name (RFC 4210 root key update), another key.
  const neu = await makeTestCa({ now: clock.now() });
  const newRoot = neu.init.rootPem;
  const until = new Date(Date.now() + 30 * 86_400_000);
  const newByOld = await crossCertificate(newRoot, { root: ca.root, tc: ca.tc }, until);
  const oldByNew = await crossCertificate(ca.root, { root: newRoot, tc: neu }, until);
  const cross = [{ pem: newByOld, subject: newRoot, issuer: ca.root }, { pem: oldByNew, subject: ca.root, issuer: newRoot }];
  let answers: Answers = { '/roots.json': rootsJson({ current: ca.root, roots: [{ pem: ca.root }], cross: [], phase: 'none' }) };
  answerOn(ca, () => answers);
  const dir = hostDir();
  return {
    clock, ca, neu, newRoot, cross, dir,
    set(a: Answers) {
      answers = a;
    },
    overlap(retireAt: Date): Answers {
      return { '/roots.json': rootsJson({ current: newRoot, roots: [{ pem: ca.root, retireAt }, { pem: newRoot }], cross, phase: 'overlap', oldRoot: ca.root, newRoot, retireAt }) };
    },
    async close(): Promise<void> {
      await ca.close();
      await neu.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('ok/the bundle follows /roots.json: {old} -> {old,new} -> {new}; fail/an unknown root without a valid cross-certificate is refused and the bundle kept', async () => {
  const r = await rollover();
  let evil: TestCa | undefined;
  try {
    const bundle = path.join(r.dir, 'ca-bundle.pem');
    const m = manifestFor(r.dir, { ca: { url: r.ca.url, rootFingerprint: r.ca.rootFingerprint }, stateDir: path.join(r.dir, 'state'), trust: { refresh: '1m', bundles: [{ path: bundle, include: ['root'] }] } });
    const agent = new Agent({ manifest: m, now: r.clock.now });
    const cycle = async () => {
      r.clock.advance(120_000);
      return agent.cycle({ ignoreBackoff: true });
    };
    const oldFp = fingerprint(r.ca.root);
    const newFp = fingerprint(r.newRoot);
    const oldLeaf = await r.ca.tc.ca.issue({ role: 'server', names: { dns: ['old.acme.internal'], ip: [], uri: [] } });
    const newLeaf = await r.neu.ca.issue({ role: 'server', names: { dns: ['new.acme.internal'], ip: [], uri: [] } });
    const verifies = (leaf: typeof oldLeaf) => verifyStrict(r.dir, leaf.certificatePem, leaf.chainPem, fs.readFileSync(bundle, 'utf8'));

    assert.equal((await cycle()).exitCode, 0);
    assert.deepEqual(fingerprintsIn(bundle), [oldFp]);
    assert.deepEqual([verifies(oldLeaf), verifies(newLeaf)], [true, false]);

    r.set(r.overlap(new Date(r.clock.now().getTime() + 7 * 86_400_000)));
    const overlap = await cycle();
    assert.equal(overlap.exitCode, 0, JSON.stringify(overlap.trust));
    assert.deepEqual(fingerprintsIn(bundle), [oldFp, newFp].sort());
    assert.deepEqual([verifies(oldLeaf), verifies(newLeaf)], [true, true]);

    // A third root, vouched for only by itself: refused, nothing changes.
    evil = await makeTestCa({ now: r.clock.now() });
    const before = fs.readFileSync(bundle, 'utf8');
    const selfCross = await crossCertificate(evil.init.rootPem, { root: evil.init.rootPem, tc: evil }, new Date(Date.now() + 86_400_000));
    r.set({ '/roots.json': rootsJson({ current: r.newRoot, roots: [{ pem: r.ca.root }, { pem: r.newRoot }, { pem: evil.init.rootPem }], cross: [...r.cross, { pem: selfCross, subject: evil.init.rootPem, issuer: evil.init.rootPem }], phase: 'overlap' }) });
    const refused = await cycle();
    assert.equal(refused.trust.ok, false);
    assert.equal(refused.trust.code, 'CA_UNTRUSTED');
    assert.equal(fs.readFileSync(bundle, 'utf8'), before);

    // The old root retired: the CA lists the new root only, and its intermediates are the new root's.
    r.set({
      '/roots.json': rootsJson({ current: r.newRoot, roots: [{ pem: r.newRoot }], cross: [], phase: 'retired' }),
      '/roots.pem': rootsPem([{ pem: r.newRoot }]),
      '/ca/server.pem': r.neu.ca.server.pem, '/ca/client.pem': r.neu.ca.client.pem, '/ca/server.all.pem': '', '/ca/client.all.pem': '',
    });
    const retired = await cycle();
    assert.equal(retired.exitCode, 0, JSON.stringify(retired.trust));
    assert.deepEqual(fingerprintsIn(bundle), [newFp]);
    assert.deepEqual([verifies(oldLeaf), verifies(newLeaf)], [false, true]);
  } finally {
    await evil?.close();
    await r.close();
  }
});

test('ok/a certificate under a root marked retiring is renewed at once, and only once', async () => {
  const r = await rollover();
  try {
    fs.writeFileSync(path.join(r.dir, 'web.token'), await r.ca.token(['localhost', '127.0.0.1']));
    const m = manifestFor(r.dir, serverManifest(r.dir, r.ca, { trust: { refresh: '1m' } }));
    const agent = new Agent({ manifest: m, now: r.clock.now });
    const cycle = async () => {
      r.clock.advance(120_000);
      return agent.cycle({ ignoreBackoff: true });
    };
    const first = await cycle();
    assert.equal(first.certificates[0].action, 'enrolled', JSON.stringify(first));
    const quiet = await cycle();
    assert.equal(quiet.certificates[0].action, 'none');
    r.set(r.overlap(new Date(r.clock.now().getTime() + 7 * 86_400_000)));
    const moved = await cycle();
    assert.equal(moved.certificates[0].action, 'renewed', JSON.stringify(moved.certificates[0]));
    assert.notEqual(moved.certificates[0].serial, first.certificates[0].serial);
    // Obtained after the root was seen retiring: not renewed again (the CA here still issues under it).
    const after = await cycle();
    assert.equal(after.certificates[0].action, 'none', JSON.stringify(after.certificates[0]));
    // What was written is what the CA answered, and it verifies to the roots trusted now.
    const fullchain = fs.readFileSync(path.join(r.dir, 'certs/web.fullchain.pem'), 'utf8');
    const cert = fs.readFileSync(path.join(r.dir, 'certs/web.crt'), 'utf8');
    assert.ok(fullchain.startsWith(cert));
    assert.equal(verifyStrict(r.dir, cert, fullchain.slice(cert.length), r.ca.root + r.newRoot), true);
  } finally {
    await r.close();
  }
});

test('ok/a certificate whose intermediate is on the root CRL is renewed at once, and only once', async () => {
  const r = await rollover();
  try {
    fs.writeFileSync(path.join(r.dir, 'web.token'), await r.ca.token(['localhost', '127.0.0.1']));
    const m = manifestFor(r.dir, serverManifest(r.dir, r.ca, { trust: { refresh: '1m', crls: [{ path: path.join(r.dir, 'root.crl'), issuers: ['root'] }] } }));
    const agent = new Agent({ manifest: m, now: r.clock.now });
    const cycle = async () => {
      r.clock.advance(120_000);
      return agent.cycle({ ignoreBackoff: true });
    };
    const first = await cycle();
    assert.equal(first.certificates[0].action, 'enrolled', JSON.stringify(first));
    // Later, the offline root revokes the server intermediate; the CA serves the new root CRL.
    r.clock.advance(60_000);
    const der = await renewRootCrl({ offlineDir: r.ca.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: r.ca.tc.ca.server.pem }, now: r.clock.now() });
    fs.writeFileSync(r.ca.tc.layout.rootCrl, der);
    const moved = await cycle();
    assert.equal(moved.certificates[0].action, 'renewed', JSON.stringify(moved));
    assert.equal((await cycle()).certificates[0].action, 'none');
  } finally {
    await r.close();
  }
});
