/**
 * Where CA keys become Signers. Everything in `ca/` that signs (leaf certificates, CRLs, OCSP
 * responder certificates and responses, enrollment tokens, the root's and the intermediates'
 * certificates and CSRs) is handed a {@link Signer} made here and never sees the private key, so a
 * hardware-held key (PKCS#11, a KMS) is a new function in this folder, not an edit across `ca/`.
 */
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, type KeyType } from '../core/algorithms.ts';
import { keyObjectSigner, type KeyObjectSignerOptions, type Signer } from '../core/signer.ts';
import { readEncryptedKey, writeEncryptedKey } from './encrypted-key-file.ts';

/**
 * A Signer over the key in an encrypted key file (see readEncryptedKey for the custody checks).
 * The file is read and decrypted once, now; the key stays in memory for the Signer's life and is
 * reused for every signature (making a KeyObject per signature costs more than the signature).
 *
 * @throws as readEncryptedKey, and `KEY_WEAK` for a key type mutual does not sign with.
 */
export function openSigner(path: string, passphrase: string, o: KeyObjectSignerOptions = {}): Signer {
  return keyObjectSigner(readEncryptedKey(path, passphrase), o);
}

/** A Signer over a key made just now, in memory; {@link GeneratedSigner.save} keeps it. */
export interface GeneratedSigner extends Signer {
  /**
   * Writes the key to `path`, encrypted with `passphrase` (see writeEncryptedKey: never replaces a
   * file, mode 0600).
   * @throws as writeEncryptedKey.
   */
  save(path: string, passphrase: string): void;
}

/**
 * Makes a new key of `type` and a Signer over it. Nothing is written until `save`: a CA being
 * made signs with its new keys first and writes them once everything else worked.
 */
export function generateSigner(type: KeyType, o: KeyObjectSignerOptions = {}): GeneratedSigner {
  const privateKey: KeyObject = generateKeyPair(type).privateKey;
  const signer = keyObjectSigner(privateKey, o);
  return { ...signer, save: (path, passphrase) => writeEncryptedKey(path, privateKey, passphrase) };
}
