import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { keyedName, loadIntermediates } from '../../src/ca/load-intermediates.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { spkiDer } from '../../src/core/algorithms.ts';
import { isMutualError } from '../../src/core/errors.ts';

let tc: TestCa;
before(async () => {
  tc = await makeTestCa({ url: 'https://ca.acme.internal:8443/', now: new Date('2027-03-01T09:30:00Z') });
});
after(() => tc.close());

/** A copy of the test CA's state folder, for a case that damages it. */
function copyHome(name: string): string {
  const home = path.join(tc.dir, name);
  fs.cpSync(tc.home, home, { recursive: true });
  // Key custody as the original: cpSync makes folders with the umask's modes.
  for (const d of [home, homeLayout(home).keysDir]) fs.chmodSync(d, 0o700);
  return home;
}

test('ok/both intermediates, each with a Signer over its certificate\'s key, and the URLs named by key', () => {
  const { config, server, client, retired } = loadIntermediates(tc.layout, TEST_PASSPHRASE, undefined, false);
  assert.equal(config.trustDomain, 'acme.internal');
  assert.deepEqual(retired, []);
  for (const [inter, role] of [[server, 'server-ca'], [client, 'client-ca']] as const) {
    assert.equal(inter.role, role);
    assert.deepEqual(spkiDer(inter.signer.publicKey), inter.info.spki);
    assert.equal(inter.keyId, inter.info.subjectKeyId!.toString('hex'));
    // The Signer signs with the certificate's key.
    const sig = inter.signer.sign(Buffer.from('tbs')) as Uint8Array;
    assert.ok(crypto.verify(inter.signer.algorithm.hash, Buffer.from('tbs'), new crypto.X509Certificate(inter.pem).publicKey, sig));
    assert.equal(inter.lint.signatureOid, inter.signer.algorithm.oid);
  }
  assert.equal(keyedName('server', server.keyId), `server.${server.keyId.slice(0, 16)}`);
});

test('ok/offloadCrypto: the Signers sign on the thread pool', async () => {
  const { server } = loadIntermediates(tc.layout, TEST_PASSPHRASE, undefined, true);
  const sig = server.signer.sign(Buffer.from('tbs'));
  assert.ok(sig instanceof Promise);
  assert.ok(crypto.verify(server.signer.algorithm.hash, Buffer.from('tbs'), server.signer.publicKey, await sig));
});

test('ok/a retired intermediate (key and certificate kept as .prev-<time>) is loaded as retired', () => {
  const home = copyHome('with-retired');
  const l = homeLayout(home);
  fs.copyFileSync(l.serverCaCert, l.serverCaCert.replace(/\.pem$/, '.prev-1700000000000.pem'));
  fs.copyFileSync(l.serverCaKey, l.serverCaKey.replace(/\.key\.pem$/, '.prev-1700000000000.key.pem'));
  const { retired } = loadIntermediates(l, TEST_PASSPHRASE, undefined, false);
  assert.deepEqual(retired.map((r) => r.role), ['server-ca']);
});

test('fail/no-config: CA_NOT_INITIALIZED', () => {
  const home = copyHome('no-config');
  fs.rmSync(homeLayout(home).config);
  assert.throws(() => loadIntermediates(homeLayout(home), TEST_PASSPHRASE, undefined, false), (e) => isMutualError(e, 'CA_NOT_INITIALIZED'));
});

test('fail/key-of-the-other-intermediate: KEY_MISMATCH', () => {
  const home = copyHome('swapped-key');
  const l = homeLayout(home);
  fs.rmSync(l.serverCaKey);
  fs.copyFileSync(l.clientCaKey, l.serverCaKey);
  assert.throws(() => loadIntermediates(l, TEST_PASSPHRASE, undefined, false), (e) => isMutualError(e, 'KEY_MISMATCH'));
});

test('fail/wrong-passphrase: KEY_PASSPHRASE_WRONG', () => {
  assert.throws(() => loadIntermediates(tc.layout, 'not the passphrase at all', undefined, false), (e) => isMutualError(e, 'KEY_PASSPHRASE_WRONG'));
});
