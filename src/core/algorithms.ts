/**
 * Key types and signature algorithms: which key mutual makes for a given `KeyType`, and which
 * signature algorithm a CA key signs with (RFC 5758 for ECDSA, RFC 8410 for Ed25519, RFC 4055 for RSA).
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { derNull, oid, seq, readElement, expect, children, contentBytes, oidToString as oidString, Tag } from './der.ts';
import { OID } from './oids.ts';
import { MutualError } from './errors.ts';

/** Key types mutual makes and accepts. */
export const KEY_TYPES = ['p256', 'p384', 'ed25519', 'rsa2048', 'rsa3072', 'rsa4096'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** A signature algorithm with its DER AlgorithmIdentifier. */
export interface SignatureAlgorithm {
  name: string;
  oid: string;
  /** Hash given to `crypto.sign`/`crypto.verify`; null for Ed25519. */
  hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** DER of the AlgorithmIdentifier (parameters absent for ECDSA/Ed25519, NULL for RSA). */
  der: Buffer;
}

const alg = (name: string, id: string, hash: SignatureAlgorithm['hash'], withNull: boolean): SignatureAlgorithm => ({
  name,
  oid: id,
  hash,
  der: withNull ? seq(oid(id), derNull()) : seq(oid(id)),
});

/** The algorithms mutual signs with. */
export const SIGNATURE_ALGORITHMS = {
  ecdsaWithSHA256: alg('ecdsa-with-SHA256', OID.ecdsaWithSHA256, 'sha256', false),
  ecdsaWithSHA384: alg('ecdsa-with-SHA384', OID.ecdsaWithSHA384, 'sha384', false),
  ed25519: alg('Ed25519', OID.ed25519, null, false),
  sha256WithRSAEncryption: alg('sha256WithRSAEncryption', OID.sha256WithRSAEncryption, 'sha256', true),
} as const;

/** Signature algorithms accepted on input (CSRs), by OID. SHA-1 is deliberately absent. */
export const ACCEPTED_SIGNATURE_OIDS: ReadonlyMap<string, SignatureAlgorithm['hash']> = new Map<string, SignatureAlgorithm['hash']>([
  [OID.ecdsaWithSHA256, 'sha256'],
  [OID.ecdsaWithSHA384, 'sha384'],
  [OID.ecdsaWithSHA512, 'sha512'],
  [OID.ed25519, null],
  [OID.sha256WithRSAEncryption, 'sha256'],
  [OID.sha384WithRSAEncryption, 'sha384'],
  [OID.sha512WithRSAEncryption, 'sha512'],
]);

/** Makes a new key pair of the given type. */
export function generateKeyPair(type: KeyType): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (type) {
    case 'p256':
      return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'p384':
      return crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'ed25519':
      return crypto.generateKeyPairSync('ed25519');
    case 'rsa2048':
    case 'rsa3072':
    case 'rsa4096':
      return crypto.generateKeyPairSync('rsa', { modulusLength: Number(type.slice(3)) });
    default:
      throw new TypeError(`unknown key type ${String(type)}; use one of ${KEY_TYPES.join(', ')}`);
  }
}

/**
 * Describes a public key, or rejects it as weak: RSA under 2048 bits, curves other than P-256/P-384,
 * and key types other than EC, Ed25519 and RSA.
 */
export function describeKey(key: KeyObject): { type: KeyType; label: string } {
  const t = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  if (t === 'ec') {
    if (d.namedCurve === 'prime256v1' || d.namedCurve === 'P-256') return { type: 'p256', label: 'ECDSA P-256' };
    if (d.namedCurve === 'secp384r1' || d.namedCurve === 'P-384') return { type: 'p384', label: 'ECDSA P-384' };
    throw new MutualError('KEY_WEAK', { detail: `curve ${d.namedCurve ?? 'unknown'} is not accepted` });
  }
  if (t === 'ed25519') return { type: 'ed25519', label: 'Ed25519' };
  if (t === 'rsa') {
    const bits = d.modulusLength ?? 0;
    if (bits < 2048) throw new MutualError('KEY_WEAK', { detail: `RSA ${bits} bits; at least 2048 are needed` });
    if (bits > 8192) throw new MutualError('KEY_WEAK', { detail: `RSA ${bits} bits is more than mutual accepts (8192)` });
    const type = bits >= 4096 ? 'rsa4096' : bits >= 3072 ? 'rsa3072' : 'rsa2048';
    return { type, label: `RSA ${bits}` };
  }
  throw new MutualError('KEY_WEAK', { detail: `key type ${t ?? 'unknown'} is not accepted` });
}

const EC_CURVES: Record<string, { type: KeyType; label: string }> = {
  [OID.p256]: { type: 'p256', label: 'ECDSA P-256' },
  [OID.p384]: { type: 'p384', label: 'ECDSA P-384' },
};

/**
 * Describes a DER SubjectPublicKeyInfo without building a KeyObject's details, or rejects it as
 * weak. Reading `asymmetricKeyDetails` of a fresh KeyObject costs ~37 us here (OpenSSL computes
 * them on demand), a fifth of the whole issuance budget; the SPKI says the same in its OIDs.
 */
export function describeSpki(spki: Uint8Array): { type: KeyType; label: string } {
  const outer = expect(spki, 0, Tag.SEQUENCE, spki.length, 'SubjectPublicKeyInfo');
  const [algId, bits] = children(spki, outer, 2);
  if (!algId || !bits || algId.tag !== Tag.SEQUENCE || bits.tag !== Tag.BIT_STRING) throw new MutualError('DER_MALFORMED', { detail: 'bad SubjectPublicKeyInfo' });
  const [kind, params] = children(spki, algId, 2);
  if (!kind || kind.tag !== Tag.OID) throw new MutualError('DER_MALFORMED', { detail: 'SubjectPublicKeyInfo without an algorithm' });
  const keyOid = oidString(contentBytes(spki, kind));
  if (keyOid === OID.ecPublicKey) {
    const curve = params && params.tag === Tag.OID ? oidString(contentBytes(spki, params)) : 'unnamed';
    const c = EC_CURVES[curve];
    if (!c) throw new MutualError('KEY_WEAK', { detail: `curve ${curve} is not accepted; use P-256 or P-384` });
    return c;
  }
  if (keyOid === OID.ed25519) return { type: 'ed25519', label: 'Ed25519' };
  if (keyOid === OID.rsaEncryption) {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } inside the BIT STRING.
    const inner = contentBytes(spki, bits).subarray(1);
    const seqEl = expect(inner, 0, Tag.SEQUENCE, inner.length, 'RSAPublicKey');
    const [modulus] = children(inner, seqEl, 2);
    let m = contentBytes(inner, modulus);
    while (m.length > 0 && m[0] === 0) m = m.subarray(1);
    const bitsLen = m.length * 8 - Math.clz32(m[0] ?? 0) + 24;
    if (bitsLen < 2048) throw new MutualError('KEY_WEAK', { detail: `RSA ${bitsLen} bits; at least 2048 are needed` });
    if (bitsLen > 8192) throw new MutualError('KEY_WEAK', { detail: `RSA ${bitsLen} bits is more than mutual accepts (8192)` });
    return { type: bitsLen >= 4096 ? 'rsa4096' : bitsLen >= 3072 ? 'rsa3072' : 'rsa2048', label: `RSA ${bitsLen}` };
  }
  throw new MutualError('KEY_WEAK', { detail: `key algorithm ${keyOid} is not accepted` });
}

/** The algorithm a CA key of this kind signs with. */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  const { type } = describeKey(key);
  if (type === 'p256') return SIGNATURE_ALGORITHMS.ecdsaWithSHA256;
  if (type === 'p384') return SIGNATURE_ALGORITHMS.ecdsaWithSHA384;
  if (type === 'ed25519') return SIGNATURE_ALGORITHMS.ed25519;
  return SIGNATURE_ALGORITHMS.sha256WithRSAEncryption;
}

/** The DER SubjectPublicKeyInfo of a key. */
export function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/**
 * The RFC 5280 4.2.1.2 method-1 key identifier: SHA-1 of the subjectPublicKey BIT STRING's value
 * (without tag, length and unused-bits byte). SHA-1 is fine here: it names a key, it signs nothing.
 */
export function keyIdentifier(spki: Uint8Array): Buffer {
  const outer = expect(spki, 0, Tag.SEQUENCE, spki.length, 'SubjectPublicKeyInfo');
  const [, bits] = children(spki, outer, 2);
  if (!bits || bits.tag !== Tag.BIT_STRING) throw new MutualError('DER_MALFORMED', { detail: 'SubjectPublicKeyInfo without a BIT STRING' });
  return crypto.createHash('sha1').update(contentBytes(spki, bits).subarray(1)).digest();
}

/** Reads an AlgorithmIdentifier's OID. */
export function algorithmOid(buf: Uint8Array, offset: number, limit: number): string {
  const e = expect(buf, offset, Tag.SEQUENCE, limit, 'AlgorithmIdentifier');
  const o = readElement(buf, e.contentStart, e.end);
  if (o.tag !== Tag.OID) throw new MutualError('DER_MALFORMED', { detail: 'AlgorithmIdentifier without an OID' });
  return oidString(contentBytes(buf, o));
}

