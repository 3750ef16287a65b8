import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Keys behind the signer seam (issue 15): every CA signature in src/ca goes through a Signer that
 * src/keys makes (openSigner, generateSigner), so ca/ never decrypts, writes or builds a private key
 * itself, and a hardware-held key is a new function in src/keys, not an edit across ca/.
 * Comments are skipped: they may name what is not called.
 */
const CA_DIR = new URL('../../src/ca/', import.meta.url).pathname;
const FORBIDDEN: { pattern: RegExp; why: string }[] = [
  { pattern: /\breadEncryptedKey\b/, why: 'decrypts a CA key into a KeyObject: use openSigner from src/keys' },
  { pattern: /\bwriteEncryptedKey\b/, why: 'writes a private KeyObject: make the key with generateSigner and save() it' },
  { pattern: /\bcreatePrivateKey\b/, why: 'builds a private KeyObject: keys are loaded in src/keys' },
];

/** The offending lines of the .ts files of `dir`, comments left out. */
function seamViolations(dir: string): string[] {
  const found: string[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    fs.readFileSync(path.join(dir, f), 'utf8').split('\n').forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      if (/^\s*(\/?\*)/.test(code)) return;
      for (const { pattern, why } of FORBIDDEN) if (pattern.test(code)) found.push(`${f}:${i + 1}: ${line.trim()} (${why})`);
    });
  }
  return found;
}

test('ok/src/ca touches no private CA key: it signs through Signers from src/keys', () => {
  assert.deepEqual(seamViolations(CA_DIR), []);
});
