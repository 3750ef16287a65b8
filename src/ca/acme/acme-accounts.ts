/**
 * The checks on what a client sends to make an account (RFC 8555 section 7.3): the account key's
 * type and size, the contacts, and the external account binding's JWS (section 7.3.4). Pure
 * functions but for the HMAC verification; the store binds the key.
 */
import crypto from 'node:crypto';
import { calculateJwkThumbprint, flattenedVerify } from 'jose';
import { MutualError } from '../../core/errors.ts';
import type { FlattenedJws } from './acme-api.ts';
import type { AcmeEabKey } from './acme-store.ts';

/** Most contacts on one account (RFC 8555 leaves it to the server). */
export const MAX_CONTACTS = 10;
/** Longest contact URL. */
export const MAX_CONTACT_LENGTH = 320;
/** Longest EAB JWS part accepted (a key id, a JWK and a 32-byte MAC are far below it). */
const MAX_EAB_PART = 8192;

/** The RSA sizes accepted for account keys, in bits (RS256). */
const RSA_BITS = { min: 2048, max: 4096 } as const;
/** Curves accepted for ECDSA account keys (ES256, ES384). */
const EC_CURVES = new Set(['P-256', 'P-384']);

const badKey = (detail: string): never => {
  throw new MutualError('ACME_BAD_PUBLIC_KEY', { detail });
};

/**
 * Checks an account key: a public JWK of ECDSA P-256/P-384, RSA 2048-4096 with e = 65537, or
 * Ed25519; anything else (private parts included) is ACME_BAD_PUBLIC_KEY, as is a `thumbprint`
 * (computed by the transport) that is not the key's RFC 7638 thumbprint.
 */
export async function checkAccountKey(jwk: JsonWebKey, thumbprint: string): Promise<void> {
  if (jwk === null || typeof jwk !== 'object') badKey('the key is not a JWK');
  if ('d' in jwk || 'p' in jwk || 'k' in jwk) badKey('the JWK holds private or secret key material');
  if (jwk.kty === 'EC' && !EC_CURVES.has(String(jwk.crv))) badKey(`EC curve ${String(jwk.crv).slice(0, 16)}: P-256 and P-384 only`);
  if (jwk.kty === 'OKP' && jwk.crv !== 'Ed25519') badKey(`OKP curve ${String(jwk.crv).slice(0, 16)}: Ed25519 only`);
  if (jwk.kty !== 'EC' && jwk.kty !== 'OKP' && jwk.kty !== 'RSA') badKey(`key type ${String(jwk.kty).slice(0, 16)}: EC, RSA or OKP (Ed25519) only`);
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' });
  } catch (e) {
    return badKey(`the JWK is not a valid public key (${(e as Error).message.slice(0, 80)})`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    const d = key.asymmetricKeyDetails!;
    if (d.modulusLength! < RSA_BITS.min || d.modulusLength! > RSA_BITS.max) badKey(`RSA ${d.modulusLength} bits: ${RSA_BITS.min} to ${RSA_BITS.max}`);
    if (d.publicExponent !== 65537n) badKey('RSA public exponent must be 65537');
  }
  const computed = await calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0], 'sha256');
  if (computed !== thumbprint) badKey('the thumbprint does not match the key');
}

/** Checks contacts: `mailto:` URLs only, at most {@link MAX_CONTACTS}, each bounded. ACME_MALFORMED otherwise. */
export function checkContacts(contact: unknown): string[] {
  if (!Array.isArray(contact)) throw new MutualError('ACME_MALFORMED', { detail: 'contact must be an array of mailto: URLs' });
  if (contact.length > MAX_CONTACTS) throw new MutualError('ACME_MALFORMED', { detail: `${contact.length} contacts; at most ${MAX_CONTACTS}` });
  for (const c of contact) {
    if (typeof c !== 'string' || c.length > MAX_CONTACT_LENGTH || !/^mailto:[^\s,?%<>"]+@[^\s,?%<>"]+$/.test(c)) {
      throw new MutualError('ACME_MALFORMED', { detail: `contact ${JSON.stringify(String(c).slice(0, 80))}: one mailto:user@host address per entry, ${MAX_CONTACT_LENGTH} characters at most` });
    }
  }
  return contact as string[];
}

const eabInvalid = (detail: string): never => {
  throw new MutualError('ACME_EAB_INVALID', { detail });
};

/** The key id an EAB JWS names in its protected header (checked further by {@link verifyEab}). */
export function eabKeyId(eab: FlattenedJws): string {
  if (!eab || typeof eab.protected !== 'string' || typeof eab.payload !== 'string' || typeof eab.signature !== 'string') eabInvalid('externalAccountBinding is not a flattened JWS');
  if (eab.protected.length > MAX_EAB_PART || eab.payload.length > MAX_EAB_PART || eab.signature.length > MAX_EAB_PART) eabInvalid('externalAccountBinding is too large');
  let header: { kid?: unknown };
  try {
    header = JSON.parse(Buffer.from(eab.protected, 'base64url').toString('utf8')) as { kid?: unknown };
  } catch {
    return eabInvalid('the protected header is not base64url JSON');
  }
  if (typeof header?.kid !== 'string' || header.kid === '') eabInvalid('the protected header has no kid');
  return header.kid as string;
}

/**
 * Verifies an EAB JWS with its key (RFC 8555 section 7.3.4): HS256 only, `kid` the key's id,
 * `url` the newAccount URL, no nonce, and a payload that is the account's JWK. ACME_EAB_INVALID
 * otherwise (binding it is the store's: {@link AcmeStore.createAccount}).
 */
export async function verifyEab(eab: FlattenedJws, key: AcmeEabKey, o: { accountJwk: JsonWebKey; accountThumbprint: string; accountUrl: string }): Promise<void> {
  let result: Awaited<ReturnType<typeof flattenedVerify>>;
  try {
    result = await flattenedVerify(eab, key.hmacKey, { algorithms: ['HS256'] });
  } catch (e) {
    return eabInvalid(`the HMAC does not verify with key ${key.keyId} (${(e as { code?: string }).code ?? 'error'})`);
  }
  const h = result.protectedHeader ?? {};
  if (h.kid !== key.keyId) eabInvalid('kid does not name the key');
  if (h.url !== o.accountUrl) eabInvalid(`url must be the newAccount URL ${o.accountUrl}`);
  if ('nonce' in h) eabInvalid('the EAB JWS must not carry a nonce');
  let payload: JsonWebKey;
  try {
    payload = JSON.parse(Buffer.from(result.payload).toString('utf8')) as JsonWebKey;
  } catch {
    return eabInvalid('the payload is not a JWK');
  }
  let tp: string;
  try {
    tp = await calculateJwkThumbprint(payload as Parameters<typeof calculateJwkThumbprint>[0], 'sha256');
  } catch {
    return eabInvalid('the payload is not a JWK');
  }
  if (tp !== o.accountThumbprint) eabInvalid('the payload is not the account key');
}
