/**
 * The root rollover inside the authority, on a movable clock: ACME renewal information (ARI)
 * says "renew now" for leaves under an intermediate whose root is retiring, retired by the new
 * intermediates, or revoked at the root CRL; ACME downloads carry new-by-old during the overlap
 * (OpenSSL verifies them with only the old root); a cross-certificate is judged at the time given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isMutualError } from '../../src/core/errors.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { certIdOf } from '../../src/ca/acme/renewal-window.ts';
import { installIntermediate, installRoot, installRootCrl, intermediateCsr, readConfig, renewRootCrl, rotateRoot, rotationStatus, signIntermediate } from '../../src/ca/index.ts';
import { checkCross } from '../../src/ca/root-install.ts';
import { defaultNamePolicy } from '../../src/core/policy.ts';
import { pino } from 'pino';
import { startCaServer } from '../../src/server/ca-server.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { csrFor, makeHarness, newAccount, opensslVerify, readyOrder, type AcmeHarness } from '../acme/harness.ts';

const DAY = 86_400_000;

async function acmeCert(h: AcmeHarness, acct: { id: string; thumbprint: string }, name: string): Promise<{ pem: string; certId: string }> {
  const id = await readyOrder(h, acct, [name]);
  const done = await h.acme.finalize(acct.id, id, csrFor([name]));
  const stored = (await h.tc.ca.getCertificate(done.certificateId!))!;
  return { pem: (await h.acme.certificate(acct.id, done.certificateId!, 0)).pem, certId: certIdOf(stored.issuerKeyId, stored.serial) };
}
const renewNow = async (h: AcmeHarness, certId: string) => (await h.acme.renewalInfo(certId)).suggestedWindow.end <= h.now();

async function newIntermediates(h: AcmeHarness): Promise<void> {
  const config = readConfig(h.tc.layout.config);
  for (const role of ['server-ca', 'client-ca'] as const) {
    const csr = await intermediateCsr({ home: h.tc.home, role, passphrase: TEST_PASSPHRASE, newKey: true });
    const pem = await signIntermediate({
      offlineDir: h.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, csr, role, now: h.now(), organization: config.name,
      policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }),
    });
    await installIntermediate({ home: h.tc.home, role, certificate: pem, passphrase: TEST_PASSPHRASE, store: h.tc.ca.store });
  }
  h.tc.ca.reload(TEST_PASSPHRASE);
}

test('ok/ARI through a root rollover and an emergency; ACME chains carry new-by-old', async () => {
  const h = await makeHarness();
  try {
    const acct = await newAccount(h);
    const before = await acmeCert(h, acct, 'before.acme.internal');
    assert.equal(await renewNow(h, before.certId), false, 'no rotation: the usual window');

    await rotateRoot({ offlineDir: h.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: h.now() });
    await installRoot({ home: h.tc.home, from: h.tc.offlineDir, store: h.tc.ca.store, now: h.now() });
    h.tc.ca.reload(TEST_PASSPHRASE);
    assert.equal(h.tc.ca.rotation?.phase, 'overlap');
    assert.equal(await renewNow(h, before.certId), true, 'its intermediate\'s root is retiring: renew now');

    h.advance(60_000);
    await newIntermediates(h);
    assert.equal(await renewNow(h, before.certId), true, 'its intermediate is retired');
    const after = await acmeCert(h, acct, 'after.acme.internal');
    assert.equal(await renewNow(h, after.certId), false, 'under the new root: the usual window');
    const newByOld = fs.readFileSync(path.join(h.tc.layout.crossDir, 'new-by-old.pem'), 'utf8');
    assert.ok(after.pem.endsWith(newByOld), 'the ACME chain ends with new-by-old');
    const v = opensslVerify(h.tc, after.pem, h.now());
    assert.equal(v.status, 0, v.output);

    // Emergency: the new server intermediate revoked at the new root's CRL.
    const der = await renewRootCrl({ offlineDir: h.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: h.tc.ca.server.pem, reason: 'keyCompromise' }, now: h.now() });
    assert.equal(installRootCrl(h.tc.home, der).length, 1, 'the new root\'s CRL, not root.crl (the old root serves that until retired)');
    h.tc.ca.reload(TEST_PASSPHRASE);
    assert.equal(h.tc.ca.server.revokedAtRoot, true);
    assert.equal(await renewNow(h, after.certId), true, 'under a revoked intermediate: renew now');
    const s = await rotationStatus({ home: h.tc.home, store: h.tc.ca.store, now: h.now() });
    assert.equal(s.revokedIntermediateLeaves.count, 1);
    assert.equal(s.revokedIntermediateLeaves.serials[0].intermediate, 'server-ca');
    // With the clock past the leaf's expiry, nothing is left to renew.
    const later = await rotationStatus({ home: h.tc.home, store: h.tc.ca.store, now: new Date(h.now().getTime() + 2 * DAY) });
    assert.equal(later.revokedIntermediateLeaves.count, 0);
  } finally {
    await h.close();
  }
});

test('fail/a cross-certificate outside its validity, or for another key, is refused', async () => {
  const h = await makeHarness();
  try {
    const r = await rotateRoot({ offlineDir: h.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: h.now() });
    const oldX = new crypto.X509Certificate(r.oldRoot.pem);
    const newX = new crypto.X509Certificate(r.newRoot.pem);
    checkCross(r.newByOld, newX, oldX, h.now(), 'new-by-old');
    const end = parseCertificate(readPemOrDer(r.newByOld, ['CERTIFICATE'])).notAfter;
    assert.ok(end <= parseCertificate(readPemOrDer(r.oldRoot.pem, ['CERTIFICATE'])).notAfter, 'within the old root\'s validity');
    assert.throws(() => checkCross(r.newByOld, newX, oldX, new Date(end.getTime() + 1000), 'new-by-old'), (e) => isMutualError(e, 'ROTATION_CROSS_INVALID'));
    assert.throws(() => checkCross(r.oldByNew, newX, oldX, h.now(), 'swapped'), (e) => isMutualError(e, 'ROTATION_CROSS_INVALID'));
    assert.throws(() => checkCross(r.newByOld, newX, newX, h.now(), 'wrong issuer'), (e) => isMutualError(e, 'ROTATION_CROSS_INVALID'));
    await assert.rejects(rotateRoot({ offlineDir: h.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: h.now() }), (e) => isMutualError(e, 'ROTATION_IN_PROGRESS'));
  } finally {
    await h.close();
  }
});

test('ok/the plain-HTTP listener serves /roots.pem, /roots.json and the cross-certificates, and not the API', async () => {
  const h = await makeHarness();
  const srv = await startCaServer({ ca: h.tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, publicPort: 0, logger: pino({ level: 'silent' }), rateLimit: false });
  try {
    await rotateRoot({ offlineDir: h.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: h.now() });
    await installRoot({ home: h.tc.home, from: h.tc.offlineDir, store: h.tc.ca.store, now: h.now() });
    const get = async (u: string) => {
      const r = await fetch(`${srv.publicUrl}${u}`);
      return { status: r.status, text: await r.text() };
    };
    const roots = await get('/roots.json');
    assert.equal(roots.status, 200);
    const doc = JSON.parse(roots.text);
    assert.equal(doc.rotation.phase, 'overlap');
    assert.equal(doc.roots.length, 2);
    assert.equal((await get('/roots.pem')).text, fs.readFileSync(h.tc.layout.rootsBundle, 'utf8'));
    assert.equal((await get('/ca/cross/old-by-new.pem')).text, fs.readFileSync(path.join(h.tc.layout.crossDir, 'old-by-new.pem'), 'utf8'));
    assert.equal((await get('/v1/certificates')).status, 404);
  } finally {
    await srv.close();
    await h.close();
  }
});
