/**
 * Key reference files: a key file that holds, instead of an encrypted key, the `pkcs11:` URI of a
 * key on a token (see key-store.ts). Comment lines (`#`) and blank lines may come first; the first
 * other line is the URI. The file is kept like a key file (0600 in a 0700 folder, owner only):
 * it holds no secret, but whoever can change it chooses the module mutual loads.
 */
import { MutualError } from '../core/errors.ts';
import { prepareKeyFile, readKeyFileText, writeNewKeyFile } from './encrypted-key-file.ts';

/** Largest key reference file: one URI (at most 2 KiB) and a few comment lines. */
export const MAX_KEY_REFERENCE_BYTES = 4096;

/** The URI of a key reference file's text, or undefined when the text is not a key reference. */
export function keyReferenceUri(text: string, path: string): string | undefined {
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined || !/^pkcs11:/i.test(line)) return undefined;
  if (text.length > MAX_KEY_REFERENCE_BYTES) {
    throw new MutualError('INPUT_TOO_LARGE', { detail: `key reference ${path} has ${text.length} bytes; the limit is ${MAX_KEY_REFERENCE_BYTES}`, path });
  }
  return line;
}

/**
 * Reads a key file with the custody checks of key files: `{ uri }` for a key reference, else
 * `{ text }` (an encrypted key, for the caller to decrypt).
 */
export function readKeyFileOrReference(path: string): { uri: string } | { text: string } {
  const text = readKeyFileText(path);
  const uri = keyReferenceUri(text, path);
  return uri !== undefined ? { uri } : { text };
}

/** Writes a key reference (0600, never replacing a file: as writeEncryptedKey). */
export function writeKeyReference(path: string, uri: string): void {
  writeNewKeyFile(prepareKeyFile(path), `# A key on a PKCS#11 token (written by mutual); the key itself never leaves the token.\n${uri}\n`);
}
