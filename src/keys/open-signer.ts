/**
 * Where CA keys become Signers. Everything in `ca/` that signs (leaf certificates, CRLs, OCSP
 * responder certificates and responses, enrollment tokens, the root's and the intermediates'
 * certificates and CSRs) is handed a {@link Signer} made here and never sees the private key, so a
 * hardware-held key (PKCS#11, a KMS) is a new function in this folder, not an edit across `ca/`.
 */
import fs from 'node:fs';
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
  /**
   * Destroys a key that is not wanted after all (a step after its making failed, or a newer key
   * replaces it): on a token, its objects (private and public key); in memory, nothing to do. Only
   * for a key nobody names: after `save`, the caller first removes the file it saved.
   * Idempotent; waits for the key's signatures in flight.
   * @throws TypeError while the file `save` wrote exists; MutualError `HSM_UNAVAILABLE` when the
   *   token cannot be reached (the key stays).
   */
  discard(): Promise<void>;
  /**
   * Ends an ephemeral key (`ephemeral`: a token session object, or a key in memory) once its user
   * is done with it: destroys it on the token now instead of when the session closes, so keys
   * made per rotation do not pile up in a long-lived process. Idempotent; waits for the key's
   * signatures in flight.
   * @throws TypeError for a persistent token key (discard it instead); as discard.
   */
  release(): Promise<void>;
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
    const ephemeral = o.ephemeral === true;
    let saved: string | undefined;
    return {
      publicKey: signer.publicKey,
      algorithm: signer.algorithm,
      sign: (data) => signer.sign(data),
      health: () => signer.health(),
      save: (path) => {
        writeKeyReference(path, reference);
        saved = path;
      },
      discard: async () => {
        if (saved !== undefined && fs.existsSync(saved)) throw new TypeError(`the key reference ${saved} names this key: remove it before discarding the key`);
        await signer.destroy({ ephemeral });
      },
      release: async () => {
        if (!ephemeral) throw new TypeError('release() is for ephemeral keys; a persistent token key is discarded');
        await signer.destroy({ ephemeral });
      },
    };
  }
  const privateKey: KeyObject = generateKeyPair(type).privateKey;
  const signer = keyObjectSigner(privateKey, o);
  let saved: string | undefined;
  return {
    ...signer,
    save: (path, passphrase) => {
      writeEncryptedKey(path, privateKey, passphrase);
      saved = path;
    },
    discard: async () => {
      if (saved !== undefined && fs.existsSync(saved)) throw new TypeError(`the key file ${saved} holds this key: remove it before discarding the key`);
    },
    release: async () => undefined,
  };
}
