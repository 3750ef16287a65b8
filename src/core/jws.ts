/**
 * Compact JWS (RFC 7515) signed through a {@link Signer}, for the enrollment tokens. jose signs
 * only with a key it holds; mutual's CA keys stay behind the Signer seam, so the signing input is
 * built here and the Signer signs it. Verification stays with jose (`jwtVerify`), which holds only
 * the public key.
 */
import { MutualError } from './errors.ts';
import { OID } from './oids.ts';
import { Tag, children, contentBytes, expect } from './der.ts';
import type { Signer } from './signer.ts';

/** Bytes of each of r and s in an ES256 signature (RFC 7518 section 3.4: P-256, 32 octets each). */
const ES256_COORDINATE_BYTES = 32;

/**
 * Signs `payload` as a compact JWS with ES256 (ECDSA P-256 with SHA-256), header `{ alg: 'ES256',
 * ...header }`. The Signer's signature is DER (as X.509 wants it) and is converted to the JOSE
 * form, r || s (RFC 7518 section 3.4).
 *
 * @throws TypeError when the Signer's key is not ECDSA P-256 with SHA-256.
 */
export async function signCompactJws(header: Record<string, unknown>, payload: Record<string, unknown>, signer: Signer): Promise<string> {
  if (signer.algorithm.oid !== OID.ecdsaWithSHA256 || signer.publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new TypeError(`signCompactJws signs ES256 only; the Signer's algorithm is ${signer.algorithm.name}`);
  }
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
  const input = `${b64({ alg: 'ES256', ...header })}.${b64(payload)}`;
  const der = await signer.sign(Buffer.from(input, 'ascii'));
  return `${input}.${Buffer.from(ecdsaDerToRaw(der, ES256_COORDINATE_BYTES)).toString('base64url')}`;
}

/**
 * Converts a DER ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }, RFC 3279 section 2.2.3) to
 * r || s, each left-padded to `size` bytes.
 *
 * @throws MutualError `DER_MALFORMED` when `der` is not such a value or r or s is longer than `size`.
 */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  const outer = expect(der, 0, Tag.SEQUENCE, der.length, 'ECDSA-Sig-Value');
  const parts = children(der, outer, 2);
  if (parts.length !== 2 || outer.end !== der.length) throw new MutualError('DER_MALFORMED', { detail: 'not an ECDSA-Sig-Value' });
  const out = new Uint8Array(size * 2);
  parts.forEach((e, i) => {
    expect(der, e.start, Tag.INTEGER, outer.end, i === 0 ? 'r' : 's');
    let v = contentBytes(der, e);
    // DER INTEGERs are signed: a leading 0x00 keeps a high bit from reading as negative.
    while (v.length > 1 && v[0] === 0) v = v.subarray(1);
    if (v.length > size) throw new MutualError('DER_MALFORMED', { detail: `ECDSA signature ${i === 0 ? 'r' : 's'} has ${v.length} bytes; at most ${size}` });
    out.set(v, size * (i + 1) - v.length);
  });
  return out;
}
