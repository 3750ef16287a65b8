/**
 * readPrivateKeyFile: a TLS client's key (the admin's), encrypted or not, under the CA keys'
 * custody check (issue 13, item 12): a key others can read is refused whatever its form, and the
 * passphrase is asked for only when the key is encrypted.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readPrivateKeyFile, writeEncryptedKey } from '../../src/keys/index.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

const PASSPHRASE = 'admin key passphrase';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-client-key-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const key = generateKeyPair('p256').privateKey;
const der = (k: { export(o: { type: 'pkcs8'; format: 'der' }): Buffer }) => k.export({ type: 'pkcs8', format: 'der' });

let n = 0;
/** A key file in a fresh folder: `form` encrypted or plain, with the file and folder modes given. */
function keyFile(form: 'encrypted' | 'plain' | 'sec1', fileMode = 0o600, dirMode = 0o700): string {
  const dir = path.join(root, `case-${++n}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  const file = path.join(dir, 'key.pem');
  if (form === 'encrypted') writeEncryptedKey(file, key, PASSPHRASE);
  else fs.writeFileSync(file, key.export(form === 'plain' ? { type: 'pkcs8', format: 'pem' } : { type: 'sec1', format: 'pem' }) as string);
  fs.chmodSync(file, fileMode);
  fs.chmodSync(dir, dirMode);
  return file;
}

const CASES: { name: string; file: () => string; passphrase?: string; code?: ErrorCode; asks: boolean }[] = [
  { name: 'ok/encrypted-0600', file: () => keyFile('encrypted'), passphrase: PASSPHRASE, asks: true },
  { name: 'ok/encrypted-0400', file: () => keyFile('encrypted', 0o400), passphrase: PASSPHRASE, asks: true },
  { name: 'ok/plain-pkcs8-0600-without-asking', file: () => keyFile('plain'), asks: false },
  { name: 'ok/plain-sec1-0600-without-asking', file: () => keyFile('sec1'), asks: false },
  { name: 'fail/encrypted-wrong-passphrase', file: () => keyFile('encrypted'), passphrase: 'not the passphrase', code: 'KEY_PASSPHRASE_WRONG', asks: true },
  { name: 'fail/encrypted-0644', file: () => keyFile('encrypted', 0o644), passphrase: PASSPHRASE, code: 'KEY_FILE_INSECURE', asks: false },
  { name: 'fail/plain-0644', file: () => keyFile('plain', 0o644), code: 'KEY_FILE_INSECURE', asks: false },
  { name: 'fail/plain-0604', file: () => keyFile('plain', 0o604), code: 'KEY_FILE_INSECURE', asks: false },
  { name: 'fail/plain-0600-in-a-0755-folder', file: () => keyFile('plain', 0o600, 0o755), code: 'KEY_FILE_INSECURE', asks: false },
  { name: 'fail/missing', file: () => path.join(root, 'no-such-key.pem'), code: 'KEY_FILE_MISSING', asks: false },
];

for (const c of CASES) {
  test(c.name, async () => {
    const file = c.file();
    let asked = 0;
    const passphrase = () => {
      asked++;
      return c.passphrase ?? 'unused passphrase';
    };
    if (c.code) {
      await assert.rejects(readPrivateKeyFile(file, passphrase), (e) => isMutualError(e, c.code) && !String(e.message).includes(PASSPHRASE));
    } else {
      const got = await readPrivateKeyFile(file, passphrase);
      assert.deepEqual(der(got), der(key));
    }
    assert.equal(asked, c.asks ? 1 : 0, 'the passphrase is asked for only for an encrypted key that passed custody');
  });
}
