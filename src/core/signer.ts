/**
 * The signing interface. Core code never touches a raw private key: it is handed a Signer, so an
 * encrypted file key, PKCS#11 or a KMS plug in the same way (DESIGN.md).
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { signatureAlgorithmFor, type SignatureAlgorithm } from './algorithms.ts';

/** Something that signs with one CA key. */
export interface Signer {
  /** The public half of the signing key. */
  readonly publicKey: KeyObject;
  /** The algorithm of the signatures `sign` makes. */
  readonly algorithm: SignatureAlgorithm;
  /** Signs `data` (a TBS structure); returns the signature as it goes in the BIT STRING. */
  sign(data: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /**
   * For a key held by a device (a PKCS#11 token): whether it can sign now. When the device was
   * lost, this first tries to reconnect, so a caller that asks (the server's `/ready`) brings it
   * back without a restart. Absent: a key in memory, always available.
   */
  health?(): Promise<SignerHealth>;
}

/** What {@link Signer.health} says. */
export interface SignerHealth {
  available: boolean;
  /** Why not, for a person (the error code and what the device said). */
  detail?: string;
}

/** Options for {@link keyObjectSigner}. */
export interface KeyObjectSignerOptions {
  /**
   * Sign on libuv's thread pool instead of the calling thread: the signature then costs the event
   * loop ~5 us instead of ~25-40 us, so a server on several cores answers HTTP while signing.
   * On one core it only adds the hand-off.
   */
  offload?: boolean;
}

/**
 * A Signer over an in-memory private KeyObject (the decrypted file key). The KeyObject is made once
 * and reused: creating one per signature costs more than the signature.
 */
export function keyObjectSigner(privateKey: KeyObject, o: KeyObjectSignerOptions = {}): Signer {
  if (privateKey.type !== 'private') throw new TypeError('keyObjectSigner needs a private KeyObject');
  const publicKey = crypto.createPublicKey(privateKey);
  const algorithm = signatureAlgorithmFor(publicKey);
  const hash = algorithm.hash;
  return {
    publicKey,
    algorithm,
    sign: o.offload
      ? (data) => new Promise<Uint8Array>((resolve, reject) => crypto.sign(hash, data, privateKey, (e, sig) => (e ? reject(e) : resolve(sig))))
      : (data) => crypto.sign(hash, data, privateKey),
  };
}
