import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateSigner, openSigner } from '../../src/keys/index.ts';
import { spkiDer } from '../../src/core/algorithms.ts';
import { isMutualError } from '../../src/core/errors.ts';

const PASSPHRASE = 'correct horse battery staple';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-signers-'));
fs.chmodSync(root, 0o700);
after(() => fs.rmSync(root, { recursive: true, force: true }));
const DATA = Buffer.from('tbs');

test('generateSigner then openSigner', async (t) => {
  for (const type of ['p256', 'p384', 'ed25519'] as const) {
    await t.test(`ok/${type}: the saved key is the key that signed`, () => {
      const made = generateSigner(type);
      const file = path.join(root, `${type}.key.pem`);
      assert.ok(!fs.existsSync(file), 'nothing is written before save');
      made.save(file, PASSPHRASE);
      const opened = openSigner(file, PASSPHRASE);
      assert.deepEqual(spkiDer(opened.publicKey), spkiDer(made.publicKey));
      assert.equal(opened.algorithm.oid, made.algorithm.oid);
      // Each verifies the other's signature: one key, two Signers over it.
      assert.ok(crypto.verify(made.algorithm.hash, DATA, opened.publicKey, made.sign(DATA) as Uint8Array));
      assert.ok(crypto.verify(opened.algorithm.hash, DATA, made.publicKey, opened.sign(DATA) as Uint8Array));
    });
  }
  await t.test('ok/offload: signs on the thread pool (a Promise)', async () => {
    const file = path.join(root, 'offload.key.pem');
    generateSigner('p256').save(file, PASSPHRASE);
    const s = openSigner(file, PASSPHRASE, { offload: true });
    const sig = s.sign(DATA);
    assert.ok(sig instanceof Promise);
    assert.ok(crypto.verify('sha256', DATA, s.publicKey, await sig));
  });
  await t.test('fail/save never replaces a key', () => {
    const file = path.join(root, 'p256.key.pem');
    const before = fs.readFileSync(file, 'utf8');
    assert.throws(() => generateSigner('p256').save(file, PASSPHRASE), (e) => isMutualError(e, 'KEY_FILE_EXISTS'));
    assert.equal(fs.readFileSync(file, 'utf8'), before);
  });
  await t.test('fail/wrong passphrase', () => {
    assert.throws(() => openSigner(path.join(root, 'p256.key.pem'), 'not the passphrase at all'), (e) => isMutualError(e, 'KEY_PASSPHRASE_WRONG'));
  });
  await t.test('fail/missing file', () => {
    assert.throws(() => openSigner(path.join(root, 'none.key.pem'), PASSPHRASE), (e) => isMutualError(e, 'KEY_FILE_MISSING'));
  });
});

test('ok/a Signer does not hand out its private key', () => {
  const s = generateSigner('p256');
  for (const v of Object.values(s)) assert.ok(!(v instanceof crypto.KeyObject && v.type === 'private'));
});
