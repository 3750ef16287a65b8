/**
 * Where CA keys become Signers. Everything in `ca/` that signs (leaf certificates, CRLs, OCSP
 * responder certificates and responses, enrollment tokens, the root's and the intermediates'
 * certificates and CSRs) is handed a {@link Signer} made here and never sees the private key, so a
 * hardware-held key (PKCS#11, a KMS) is a new function in this folder, not an edit across `ca/`.
 */
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, type KeyType } from '../core/algorithms.ts';
import { keyObjectSigner, type KeyObjectSignerOptions, type Signer } from '../core/signer.ts';
import { decryptKeyFileText, writeEncryptedKey } from './encrypted-key-file.ts';
import { readKeyFileOrReference, writeKeyReference } from './key-reference.ts';
import type { GenerateKeyOptions } from './key-store.ts';
import { generateTokenSigner, openTokenSigner, type Pkcs11Options } from './pkcs11/open-token-signer.ts';

/** Options of {@link openSigner}: for file keys, and for keys on a token. */
export interface OpenSignerOptions extends KeyObjectSignerOptions, Pkcs11Options {}

/**
 * A Signer over the key of a key file: an encrypted key (see readEncryptedKey for the custody
 * checks), read and decrypted once, now, and kept in memory for the Signer's life; or a key
 * reference (a `pkcs11:` URI, see key-store.ts), opened on its token now (`passphrase` unused).
 *
 * @throws as readEncryptedKey, and `KEY_WEAK` for a key type mutual does not sign with; for a key
 *   reference, as openTokenSigner.
 */
export function openSigner(path: string, passphrase: string, o: OpenSignerOptions = {}): Signer {
  const r = readKeyFileOrReference(path);
  if ('uri' in r) return openTokenSigner(r.uri, o);
  return keyObjectSigner(decryptKeyFileText(r.text, path, passphrase), o);
}

/** A Signer over a key made just now; {@link GeneratedSigner.save} keeps it. */
export interface GeneratedSigner extends Signer {
  /**
   * Writes the key to `path`: encrypted with `passphrase` (see writeEncryptedKey), or for a key made
   * on a token its key reference (`passphrase` unused). Never replaces a file; mode 0600.
   * @throws as writeEncryptedKey.
   */
  save(path: string, passphrase: string): void;
}

/**
 * Makes a new key of `type` and a Signer over it: in memory (nothing is written until `save`: a CA
 * being made signs with its new keys first and writes them once everything else worked), or on the
 * token `o.store` names (the key exists on the token at once; `save` writes its reference).
 * @throws for a token, as openTokenSigner, and `HSM_MECHANISM_UNSUPPORTED` for Ed25519.
 */
export function generateSigner(type: KeyType, o: GenerateKeyOptions & Pkcs11Options = {}): GeneratedSigner {
  if (o.store?.kind === 'pkcs11') {
    const { signer, reference } = generateTokenSigner(type, o.store.uri, o);
    return {
      publicKey: signer.publicKey,
      algorithm: signer.algorithm,
      sign: (data) => signer.sign(data),
      health: () => signer.health(),
      save: (path) => writeKeyReference(path, reference),
    };
  }
  const privateKey: KeyObject = generateKeyPair(type).privateKey;
  const signer = keyObjectSigner(privateKey, o);
  return { ...signer, save: (path, passphrase) => writeEncryptedKey(path, privateKey, passphrase) };
}
