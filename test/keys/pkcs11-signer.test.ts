/**
 * Keys on a PKCS#11 token (SoftHSM2): made on the token, signing certificates and CRLs built by
 * core that OpenSSL verifies, never extractable (pkcs11-tool says so), and the refusals: an
 * extractable key, a wrong PIN (tried once), an insecure PIN file, a bad module, no binding.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { closeKeyStores, generateSigner, keyLocation, keyStoreOf, openSigner, openTokenSigner } from '../../src/keys/index.ts';
import { spkiDer, type KeyType } from '../../src/core/algorithms.ts';
import { createCertificateTemplate, newSerial, subjectFor } from '../../src/core/certificate-template.ts';
import { keyIdentifier } from '../../src/core/algorithms.ts';
import { buildCrl } from '../../src/core/crl.ts';
import { toPem } from '../../src/core/pem.ts';
import type { Signer } from '../../src/core/signer.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { makeToken, type SoftHsmToken } from '../helpers/softhsm.ts';
import { openssl, requireTool, run } from '../helpers/tools.ts';
import { tempDir } from '../helpers/test-ca.ts';

const NOW = new Date('2026-12-01T00:00:00Z');
const DAY = 86_400_000;
const dir = tempDir('mutual-p11-');
fs.chmodSync(dir, 0o700);
after(async () => {
  await closeKeyStores();
  fs.rmSync(dir, { recursive: true, force: true });
});

const codeOf = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (isMutualError(e)) return e.code;
    throw e;
  }
};

/** A root certificate self-signed by `signer`, a server certificate and a CRL under it, as PEM files. */
async function issueWith(signer: Signer, name: string): Promise<{ root: string; leaf: string; crl: string }> {
  const rootName = subjectFor(`Token Root ${name}`, 'Acme');
  const keyId = keyIdentifier(spkiDer(signer.publicKey));
  const rootTemplate = createCertificateTemplate({ name: rootName, keyId, signer }, { role: 'root' });
  const rootDer = await rootTemplate.sign({ serial: newSerial(), notBefore: NOW, notAfter: new Date(+NOW + 365 * DAY), subject: rootName, spki: spkiDer(signer.publicKey) });
  const leafKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  // A server certificate straight under the root is what lint would refuse (issuer-role), but
  // OpenSSL judges signatures and structure here, which is what the token changes.
  const leafTemplate = createCertificateTemplate({ name: rootName, keyId, signer }, { role: 'server' });
  const leafDer = await leafTemplate.sign({
    serial: newSerial(), notBefore: NOW, notAfter: new Date(+NOW + 30 * DAY), subject: subjectFor('api'), spki: spkiDer(leafKey), names: { dns: ['api.acme.internal'], ip: [], uri: [] },
  });
  const crlDer = await buildCrl({ issuerName: rootName, authorityKeyId: keyId, crlNumber: 1n, thisUpdate: NOW, nextUpdate: new Date(+NOW + DAY), entries: [], signer });
  const write = (file: string, pem: string): string => {
    const p = path.join(dir, `${name}-${file}`);
    fs.writeFileSync(p, pem);
    return p;
  };
  return {
    root: write('root.pem', toPem(rootDer, 'CERTIFICATE')),
    leaf: write('leaf.pem', toPem(leafDer, 'CERTIFICATE')),
    crl: write('crl.pem', toPem(crlDer, 'X509 CRL')),
  };
}

/** Asserts OpenSSL accepts the certificate chain and the CRL signed by the token key. */
function assertOpensslAccepts(files: { root: string; leaf: string; crl: string }): void {
  const at = String(Math.floor(+NOW / 1000) + 3600);
  const v = openssl(['verify', '-x509_strict', '-attime', at, '-CAfile', files.root, files.leaf]);
  assert.equal(v.status, 0, v.stderr + v.stdout);
  const c = openssl(['crl', '-in', files.crl, '-noout', '-verify', '-CAfile', files.root]);
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stderr + c.stdout, /verify OK/);
}

/** pkcs11-tool's listing of the token's objects, as seen by a second process. */
function listObjects(tok: SoftHsmToken): string {
  const r = run('pkcs11-tool', ['--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin, '-O'], { env: tok.env });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** The block of pkcs11-tool -O output describing the private key labelled `label`. */
function privateKeyBlock(listing: string, label: string): string {
  const blocks = listing.split(/\n(?=\S)/);
  const b = blocks.find((x) => x.startsWith('Private Key Object') && x.includes(`label:      ${label}`));
  assert.ok(b, `no private key ${label} in\n${listing}`);
  return b;
}

test('keys made on the token sign what OpenSSL verifies, and never leave it', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  const cases: { name: string; type: KeyType; uri: string; alg: string }[] = [
    { name: 'p256', type: 'p256', uri: tok.tokenUri, alg: 'ecdsa-with-SHA256' },
    { name: 'p384', type: 'p384', uri: tok.tokenUri, alg: 'ecdsa-with-SHA384' },
    { name: 'rsa2048-pkcs1', type: 'rsa2048', uri: tok.tokenUri, alg: 'sha256WithRSAEncryption' },
    { name: 'rsa2048-pss', type: 'rsa2048', uri: `${tok.tokenUri}&x-mutual-rsa=pss`, alg: 'RSASSA-PSS' },
    { name: 'ed25519', type: 'ed25519', uri: tok.tokenUri, alg: 'Ed25519' },
  ];
  for (const c of cases) {
    await t.test(`ok/${c.name}`, async () => {
      const made = generateSigner(c.type, { store: { kind: 'pkcs11', uri: c.uri }, purpose: 'server-ca', now: () => +NOW });
      assert.equal(made.algorithm.name, c.alg);
      const files = await issueWith(made, c.name);
      assertOpensslAccepts(files);
      const text = openssl(['x509', '-in', files.root, '-noout', '-text']).stdout;
      if (c.name.endsWith('pss')) assert.match(text, /Hash Algorithm: sha256[\s\S]*Mask Algorithm: mgf1 with sha256[\s\S]*Salt Length: 0x20/);

      // The key reference: written 0600, read back to the same key, never over another file.
      const ref = path.join(dir, `${c.name}.key.pem`);
      made.save(ref, '');
      assert.equal(fs.statSync(ref).mode & 0o777, 0o600);
      assert.equal(codeOf(() => made.save(ref, '')), 'KEY_FILE_EXISTS');
      const reopened = openSigner(ref, 'unused');
      assert.deepEqual(spkiDer(reopened.publicKey), spkiDer(made.publicKey));
      assert.equal(reopened.algorithm.name, c.alg);
      assertOpensslAccepts(await issueWith(reopened, `${c.name}-reopened`));
      const loc = keyLocation(ref);
      assert.equal(loc.kind, 'pkcs11');
      assert.ok(loc.kind === 'pkcs11' && /;object=mutual-server-ca-20261201-[0-9a-f]{8};/.test(loc.uri) && /;id=(%[0-9a-f]{2}){20}/.test(loc.uri), loc.kind === 'pkcs11' ? loc.uri : '');
      const store = keyStoreOf(ref);
      assert.ok(store.kind === 'pkcs11' && !/object=|id=/.test(store.uri) && store.uri.includes(`token=${tok.label}`));
      assert.ok(!fs.readFileSync(ref, 'utf8').includes(tok.pin), 'the reference holds no PIN');

      // A second process sees a private key that is sensitive and was never extractable.
      const label = /object=([^;?]+)/.exec(loc.kind === 'pkcs11' ? loc.uri : '')![1];
      const block = privateKeyBlock(listObjects(tok), label);
      assert.match(block, /Access:\s+.*\bsensitive\b.*\balways sensitive\b.*\bnever extractable\b/, block);
      assert.doesNotMatch(block, /Access:.*(?<!never )extractable,/, block);
    });
  }

  await t.test('ok/an ephemeral key is a session object: another process does not see it', async () => {
    const made = generateSigner('p256', { store: { kind: 'pkcs11', uri: tok.tokenUri }, purpose: 'ocsp', ephemeral: true });
    const ref = path.join(dir, 'ephemeral.key.pem');
    made.save(ref, '');
    const loc = keyLocation(ref);
    const label = /object=([^;?]+)/.exec(loc.kind === 'pkcs11' ? loc.uri : '')![1];
    assert.ok(!listObjects(tok).includes(label), 'not on the token for others');
    assertOpensslAccepts(await issueWith(made, 'ephemeral'));
  });

  await t.test('fail/an extractable key written with pkcs11-tool is refused: HSM_KEY_EXTRACTABLE', () => {
    const r = run('pkcs11-tool', [
      '--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin,
      '--keypairgen', '--key-type', 'EC:prime256v1', '--label', 'extractable', '--id', '0e', '--extractable',
    ], { env: tok.env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(privateKeyBlock(listObjects(tok), 'extractable'), /\bextractable\b/);
    assert.equal(codeOf(() => openTokenSigner(`${tok.tokenUri.replace('?', ';object=extractable?')}`)), 'HSM_KEY_EXTRACTABLE');
  });

  await t.test('fail/a key that is not there: HSM_KEY_NOT_FOUND', () => {
    assert.equal(codeOf(() => openTokenSigner(tok.tokenUri.replace('?', ';object=nothing-here?'))), 'HSM_KEY_NOT_FOUND');
    assert.equal(codeOf(() => openTokenSigner(tok.tokenUri)), 'PKCS11_URI_INVALID');
  });

  await t.test('fail/another token: HSM_TOKEN_NOT_FOUND', () => {
    assert.equal(codeOf(() => openTokenSigner(tok.tokenUri.replace(`token=${tok.label}`, 'token=no-such-token').replace('?', ';object=x?'))), 'HSM_TOKEN_NOT_FOUND');
  });

});

test('fail/a wrong PIN is HSM_PIN_WRONG and is offered to the token once only', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  await closeKeyStores();
  const wrongPin = path.join(tok.dir, 'wrong.pin');
  fs.writeFileSync(wrongPin, 'not-the-pin\n', { mode: 0o600 });
  const uri = tok.tokenUri.replace(tok.pinFile, wrongPin).replace('?', ';object=x?');
  let now = 1_000_000;
  const open = () => openTokenSigner(uri, { now: () => now });
  assert.equal(codeOf(open), 'HSM_PIN_WRONG');
  // The token counts failed logins: "user PIN count low" appears after the first one.
  const flags = () => run('pkcs11-tool', ['--module', tok.module, '-L'], { env: tok.env }).stdout.split(/\n(?=Slot)/).find((s) => s.includes(tok.label))!;
  assert.match(flags(), /user PIN count low/);
  // Attempts within the reconnect pacing get the same answer without asking the token; later ones
  // with the same PIN are refused here, before the token: its counter stays.
  assert.equal(codeOf(open), 'HSM_PIN_WRONG');
  now += 60_000;
  assert.equal(codeOf(open), 'HSM_PIN_WRONG');
  assert.doesNotMatch(flags(), /final user PIN try|user PIN locked/);
  // The right PIN in the file works at the next attempt (the PIN is read at each login).
  fs.writeFileSync(wrongPin, `${tok.pin}\n`);
  assert.equal(codeOf(open), 'HSM_PIN_WRONG', 'not before the pacing allows');
  now += 60_000;
  assert.equal(codeOf(open), 'HSM_KEY_NOT_FOUND');
});

test('fail/PIN sources and modules that are refused', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  await closeKeyStores();
  const insecure = path.join(tok.dir, 'insecure.pin');
  fs.writeFileSync(insecure, `${tok.pin}\n`, { mode: 0o644 });
  fs.chmodSync(insecure, 0o644);
  const key = (u: string) => u.replace('?', ';object=x?');
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(tok.pinFile, insecure)))), 'KEY_FILE_INSECURE');
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(`file:${tok.pinFile}`, 'env:MUTUAL_TEST_NO_SUCH_PIN')))), 'HSM_PIN_MISSING');
  // env: reads the variable of the environment given.
  const env = { ...process.env, MUTUAL_TEST_PIN: tok.pin };
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(`file:${tok.pinFile}`, 'env:MUTUAL_TEST_PIN')), { env })), 'HSM_KEY_NOT_FOUND');

  const writable = path.join(tok.dir, 'writable.so');
  fs.copyFileSync(tok.module, writable);
  fs.chmodSync(writable, 0o666);
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(tok.module, writable)))), 'HSM_MODULE_INVALID');
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(tok.module, path.join(tok.dir, 'none.so'))))), 'HSM_MODULE_INVALID');
  const notALibrary = path.join(tok.dir, 'not-a-library.so');
  fs.writeFileSync(notALibrary, 'text', { mode: 0o600 });
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(tok.module, notALibrary)))), 'HSM_MODULE_INVALID');
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(tok.module, 'relative/lib.so')))), 'PKCS11_URI_INVALID');

  // A machine without the binding: the loader fails, and the error says what to install.
  const other = path.join(tok.dir, 'other.so');
  fs.copyFileSync(tok.module, other);
  fs.chmodSync(other, 0o755);
  const missing = () => {
    throw Object.assign(new Error("Cannot find module 'pkcs11js'"), { code: 'MODULE_NOT_FOUND' });
  };
  assert.equal(codeOf(() => openTokenSigner(key(tok.tokenUri.replace(tok.module, other)), { loader: missing })), 'HSM_BINDING_MISSING');
});
