/**
 * Verifying a signature the way its AlgorithmIdentifier says (read by algorithms.ts's
 * readSignature): the hash, the key type, and for RSASSA-PSS the salt length, with MGF1 over the
 * same hash. Used for certificates, CRLs and OCSP responses; CSRs keep their own table
 * (ACCEPTED_SIGNATURE_OIDS), which refuses RSASSA-PSS by design.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { OID } from './oids.ts';

/**
 * How to verify a signature made with an algorithm mutual accepts on certificates, CRLs and OCSP
 * responses: the key type it needs, the hash given to `crypto.verify` (null for Ed25519) and, for
 * RSASSA-PSS, the salt length the parameters name (MGF1 then uses the same hash: RFC 4055 3.1).
 */
export interface SignatureScheme {
  key: 'rsa' | 'ec' | 'ed25519';
  hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** RSASSA-PSS only: the salt length, in bytes. */
  pssSaltLength?: number;
}

const plainScheme = (key: SignatureScheme['key'], hash: SignatureScheme['hash']): SignatureScheme => Object.freeze({ key, hash });
/**
 * The schemes of the accepted algorithms whose identifier has no parameters to read (all but
 * RSASSA-PSS, which readSignature builds from its parameters), shared: no allocation per parse.
 */
export const PLAIN_SCHEMES: ReadonlyMap<string, SignatureScheme> = new Map([
  [OID.ecdsaWithSHA256, plainScheme('ec', 'sha256')],
  [OID.ecdsaWithSHA384, plainScheme('ec', 'sha384')],
  [OID.ecdsaWithSHA512, plainScheme('ec', 'sha512')],
  [OID.ed25519, plainScheme('ed25519', null)],
  [OID.sha256WithRSAEncryption, plainScheme('rsa', 'sha256')],
  [OID.sha384WithRSAEncryption, plainScheme('rsa', 'sha384')],
  [OID.sha512WithRSAEncryption, plainScheme('rsa', 'sha512')],
]);

/**
 * Verifies `signature` over `data` with `key` as `scheme` says; false for no scheme (an algorithm
 * mutual does not accept), a key of another type than the algorithm's (an ECDSA key must not pass
 * for an RSA signature's OID, nor the reverse), or a signature that does not verify.
 */
export function verifySignature(scheme: SignatureScheme | undefined, data: Uint8Array, key: KeyObject, signature: Uint8Array): boolean {
  if (!scheme) return false;
  const type = key.asymmetricKeyType;
  if (scheme.key === 'rsa' ? type !== 'rsa' && type !== 'rsa-pss' : type !== scheme.key) return false;
  try {
    if (scheme.pssSaltLength === undefined) return crypto.verify(scheme.hash, data, key, signature);
    return crypto.verify(scheme.hash, data, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: scheme.pssSaltLength }, signature);
  } catch {
    return false;
  }
}
