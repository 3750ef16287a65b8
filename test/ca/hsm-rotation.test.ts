/**
 * Key rotation with the CA's keys on a PKCS#11 token (SoftHSM2): a new server CA key made on the
 * token (`intermediate csr --new-key`: the current key's token), signed by the root on its own
 * token, installed; the old reference is retired like a key file, and what the old key issued is
 * still revocable with its CRL signed by the old token key. Then `root rotate` makes the new root
 * on the old root's token, and `--key-store` moves a new key to another token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { installIntermediate, intermediateCsr, readConfig, rotateRoot, signIntermediate } from '../../src/ca/index.ts';
import { defaultNamePolicy } from '../../src/core/policy.ts';
import { closeKeyStores, keyLocation, keyStoreOf } from '../../src/keys/index.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { makeTestCa, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { openssl, requireTool, run } from '../helpers/tools.ts';

test('ok/intermediate and root rotation onto new token keys', async (t) => {
  const tok = makeToken(t, { label: 'online' });
  const rootTok = makeToken(t, { label: 'root' });
  const other = makeToken(t, { label: 'other' });
  if (!tok || !rootTok || !other || !requireTool(t, 'openssl') || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: tok.tokenUri }, rootKeyStore: { kind: 'pkcs11', uri: rootTok.tokenUri } });
  t.after(async () => {
    await tc.close();
    await closeKeyStores();
  });
  const l = tc.layout;
  const old = await tc.ca.issue({ role: 'server', names: { dns: ['old.acme.internal'], ip: [], uri: [] }, actor: 'test' });
  const oldRef = keyLocation(l.serverCaKey);
  assert.equal(oldRef.kind, 'pkcs11');
  fs.copyFileSync(l.serverCaCert, path.join(tc.dir, 'server-ca.old.pem'));

  // A new key on the current key's token; the root (a token key, no passphrase) signs it.
  const csr = await intermediateCsr({ home: tc.home, role: 'server-ca', passphrase: TEST_PASSPHRASE, newKey: true });
  const next = keyLocation(l.serverCaKey.replace(/\.key\.pem$/, '.next.key.pem'));
  assert.equal(next.kind, 'pkcs11');
  assert.match(next.kind === 'pkcs11' ? next.uri : '', new RegExp(`token=${tok.label}`));
  assert.notEqual(next.kind === 'pkcs11' && oldRef.kind === 'pkcs11' && next.uri, oldRef.kind === 'pkcs11' && oldRef.uri, 'the next key is a new key');
  const config = readConfig(l.config);
  const pem = await signIntermediate({
    offlineDir: tc.offlineDir, rootPassphrase: '', csr, role: 'server-ca', organization: config.name,
    policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }),
  });
  await installIntermediate({ home: tc.home, role: 'server-ca', certificate: pem, passphrase: TEST_PASSPHRASE, store: tc.ca.store });
  tc.ca.reload(TEST_PASSPHRASE);

  // The new key is current; the old reference was retired beside it, unchanged.
  assert.deepEqual(keyLocation(l.serverCaKey), next);
  const retired = fs.readdirSync(l.keysDir).filter((f) => /^server-ca\.prev-\d+\.key\.pem$/.test(f));
  assert.equal(retired.length, 1);
  assert.deepEqual(keyLocation(path.join(l.keysDir, retired[0])), oldRef);
  assert.equal(tc.ca.retired.length, 1);

  // What the old key issued: revoked, and its CRL signed by the old (token) key verifies.
  const fresh = await tc.ca.issue({ role: 'server', names: { dns: ['new.acme.internal'], ip: [], uri: [] }, actor: 'test' });
  assert.notEqual(fresh.chainPem, old.chainPem);
  const r = await tc.ca.revoke({ certificate: old.certificatePem, reason: 'superseded' });
  assert.equal(r.serial, old.serial);
  const crlFile = path.join(l.caDir, `${tc.ca.crlName(tc.ca.retired[0])}.crl`);
  const v = openssl(['crl', '-in', crlFile, '-inform', 'DER', '-CAfile', path.join(tc.dir, 'server-ca.old.pem'), '-noout', '-text']);
  assert.match(v.stdout + v.stderr, /verify OK/);
  assert.ok(v.stdout.toUpperCase().includes(old.serial.toUpperCase()), v.stdout);
  const nv = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', l.rootCert, '-untrusted', l.serverCaCert, tc.file('new.pem', fresh.certificatePem)]);
  assert.equal(nv.status, 0, nv.stdout + nv.stderr);

  // --key-store: the client CA's next key goes to another token.
  await intermediateCsr({ home: tc.home, role: 'client-ca', passphrase: TEST_PASSPHRASE, newKey: true, keyStore: { kind: 'pkcs11', uri: other.tokenUri } });
  const moved = keyStoreOf(l.clientCaKey.replace(/\.key\.pem$/, '.next.key.pem'));
  assert.ok(moved.kind === 'pkcs11' && moved.uri.includes(`token=${other.label}`), JSON.stringify(moved));

  // The root: a new key on the old root's token, its reference in the offline folder.
  const rot = await rotateRoot({ offlineDir: tc.offlineDir, rootPassphrase: '' });
  const newRoot = keyLocation(path.join(tc.offlineDir, 'root.key.pem'));
  const prevRoot = keyLocation(path.join(tc.offlineDir, 'root.prev.key.pem'));
  assert.ok(newRoot.kind === 'pkcs11' && newRoot.uri.includes(`token=${rootTok.label}`));
  assert.ok(prevRoot.kind === 'pkcs11' && newRoot.uri !== prevRoot.uri);
  const cross = openssl(['verify', '-x509_strict', '-check_ss_sig', '-CAfile', tc.file('new-root.pem', rot.newRoot.pem), tc.file('old-by-new.pem', rot.oldByNew)]);
  assert.equal(cross.status, 0, cross.stdout + cross.stderr);

  // Every CA key on the online token is a private key that never left it.
  const list = run('pkcs11-tool', ['--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin, '-O'], { env: tok.env });
  const privates = list.stdout.split(/\n(?=\S)/).filter((b) => b.startsWith('Private Key Object'));
  assert.equal(privates.filter((b) => /label:\s+mutual-server-ca-/.test(b)).length, 2, list.stdout);
  for (const b of privates) assert.match(b, /never extractable/, b);
});
