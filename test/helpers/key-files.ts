/**
 * What a key file mutual writes must be: one encrypted PKCS#8 PEM block (RFC 5958, label "ENCRYPTED
 * PRIVATE KEY") from the file's first byte, unreadable without its passphrase, readable with it.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { parsePemBlocks } from '../../src/core/pem.ts';

const ENCRYPTED_PKCS8 = 'ENCRYPTED PRIVATE KEY';

/** Asserts that `pem` is an encrypted PKCS#8 key that opens with `passphrase` only. */
export function assertEncryptedKeyFile(pem: string, passphrase: string): void {
  assert.ok(pem.startsWith('-----BEGIN '), 'the file starts with its PEM block');
  assert.deepEqual(parsePemBlocks(pem).map((b) => b.label), [ENCRYPTED_PKCS8]);
  assert.throws(() => crypto.createPrivateKey(pem), 'readable without the passphrase');
  assert.equal(crypto.createPrivateKey({ key: pem, passphrase }).type, 'private');
}
