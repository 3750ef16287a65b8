/**
 * Key types and signature algorithms: which key mutual makes for a given `KeyType`, and which
 * signature algorithm a CA key signs with (RFC 5758 for ECDSA, RFC 8410 for Ed25519, RFC 4055 for RSA).
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { checkWellFormed, derNull, explicit, integer, oid, seq, readElement, readOid, expect, children, contentBytes, Tag, type DerElement } from './der.ts';
import { OID } from './oids.ts';
import { MutualError } from './errors.ts';

import { KEY_TYPES, type KeyType } from './key-types.ts';
/** Key types mutual makes and accepts (defined in ./key-types.ts, which imports nothing). */
export { KEY_TYPES, type KeyType };

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
  /**
   * RSASSA-PSS with SHA-256, MGF1-SHA-256, salt 32, trailer 1 (RFC 4055 3.1; the hash parameters
   * NULL as OpenSSL writes them): for RSA keys on a token whose URI says x-mutual-rsa=pss.
   */
  rsassaPssSha256: {
    name: 'RSASSA-PSS',
    oid: OID.rsassaPss,
    hash: 'sha256',
    der: seq(
      oid(OID.rsassaPss),
      seq(
        explicit(0, seq(oid(OID.sha256), derNull())),
        explicit(1, seq(oid(OID.mgf1), seq(oid(OID.sha256), derNull()))),
        explicit(2, integer(32)),
      ),
    ),
  },
} as const satisfies Record<string, SignatureAlgorithm>;

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

/** Smallest RSA modulus accepted, in bits (CA/Browser Forum Baseline Requirements 6.1.5). */
export const MIN_RSA_BITS = 2048;
/** Largest RSA modulus accepted, in bits: the documented 2048-4096 (docs/concepts.md, "Key types"). */
export const MAX_RSA_BITS = 4096;
/** Smallest RSA public exponent accepted: 2^16 + 1 (BR 6.1.6, after NIST SP 800-89 5.3.3). */
export const MIN_RSA_EXPONENT = 65537;
/** Longest RSA public exponent accepted, in bytes: e < 2^256 (BR 6.1.6). */
export const MAX_RSA_EXPONENT_BYTES = 32;
/** A modulus may have no prime factor below this (BR 6.1.6, "no factors smaller than 752"). */
export const RSA_SMALL_FACTOR_BOUND = 752;

/**
 * Why a key was refused, as the pre-issuance lint names it (`LINT_FAILED` rule; KEY_WEAK's
 * `fields.rule`): `key-weak` (key type or curve), `rsa-modulus-size` (outside
 * {@link MIN_RSA_BITS}..{@link MAX_RSA_BITS} or not whole bytes), `rsa-exponent` (even, below
 * {@link MIN_RSA_EXPONENT} or 2^256 and up), `rsa-modulus-factors` (even, or a prime factor
 * below {@link RSA_SMALL_FACTOR_BOUND}).
 */
export type KeyRule = 'key-weak' | 'rsa-modulus-size' | 'rsa-exponent' | 'rsa-modulus-factors';

function weak(rule: KeyRule, detail: string): never {
  throw new MutualError('KEY_WEAK', { detail, rule });
}

// The odd primes below RSA_SMALL_FACTOR_BOUND, in groups whose products stay below 2^53: the
// modulus is reduced once by the product of all of them (one BigInt remainder), then per group
// in plain numbers. ~10-20 us for a 4096-bit modulus here.
const SMALL_PRIME_GROUPS: { product: bigint; primes: number[] }[] = [];
let SMALL_PRIMES_PRODUCT = 1n;
{
  const primes: number[] = [];
  for (let p = 3; p < RSA_SMALL_FACTOR_BOUND; p += 2) if (primes.every((q) => p % q !== 0)) primes.push(p);
  let product = 1;
  let group: number[] = [];
  for (const p of primes) {
    if (product * p >= 2 ** 53) {
      SMALL_PRIME_GROUPS.push({ product: BigInt(product), primes: group });
      product = 1;
      group = [];
    }
    product *= p;
    group.push(p);
  }
  SMALL_PRIME_GROUPS.push({ product: BigInt(product), primes: group });
  for (const g of SMALL_PRIME_GROUPS) SMALL_PRIMES_PRODUCT *= g.product;
}
// The last modulus found free of small factors, for when describeSpki's own memory of the last key
// was replaced by an interleaved issuance in between; the bytes are compared, not trusted.
let lastCleanModulus: Buffer | undefined;

/** The smallest odd prime below {@link RSA_SMALL_FACTOR_BOUND} dividing `m`, or 0. */
function smallFactor(m: Uint8Array): number {
  if (lastCleanModulus && lastCleanModulus.equals(m)) return 0;
  const r = BigInt('0x' + Buffer.from(m.buffer, m.byteOffset, m.byteLength).toString('hex')) % SMALL_PRIMES_PRODUCT;
  for (const g of SMALL_PRIME_GROUPS) {
    const x = Number(r % g.product);
    for (const p of g.primes) if (x % p === 0) return p;
  }
  lastCleanModulus = Buffer.from(m);
  return 0;
}

/**
 * Checks an RSA public key as the CA/Browser Forum Baseline Requirements 6.1.5-6.1.6 do, on the
 * magnitudes of modulus and exponent (no leading zero bytes). Returns the modulus size in bits.
 * Throws KEY_WEAK with `fields.rule` (see {@link KeyRule}).
 */
export function checkRsaPublicKey(modulus: Uint8Array, exponent: Uint8Array): number {
  const bits = modulus.length === 0 ? 0 : modulus.length * 8 - Math.clz32(modulus[0]) + 24;
  if (bits < MIN_RSA_BITS) weak('rsa-modulus-size', `RSA ${bits} bits; at least ${MIN_RSA_BITS} are needed`);
  if (bits > MAX_RSA_BITS) weak('rsa-modulus-size', `RSA ${bits} bits is more than mutual accepts (${MAX_RSA_BITS})`);
  if (bits % 8 !== 0) weak('rsa-modulus-size', `RSA ${bits} bits: the modulus size must be a multiple of 8`);
  if (exponent.length === 0 || (exponent[exponent.length - 1] & 1) === 0) weak('rsa-exponent', 'the RSA public exponent must be odd (BR 6.1.6)');
  if (exponent.length > MAX_RSA_EXPONENT_BYTES) weak('rsa-exponent', 'the RSA public exponent must be below 2^256 (BR 6.1.6)');
  if (exponent.length < 3 || (exponent.length === 3 && exponent[0] * 65536 + exponent[1] * 256 + exponent[2] < MIN_RSA_EXPONENT)) {
    const e = exponent.length <= 3 ? exponent.reduce((a, b) => a * 256 + b, 0) : 0;
    weak('rsa-exponent', `RSA public exponent ${e}; at least ${MIN_RSA_EXPONENT} is needed (BR 6.1.6)${e === 1 ? '; with e = 1 any encoded digest is its own signature' : ''}`);
  }
  if ((modulus[modulus.length - 1] & 1) === 0) weak('rsa-modulus-factors', 'the RSA modulus is even (BR 6.1.6)');
  const p = smallFactor(modulus);
  if (p) weak('rsa-modulus-factors', `the RSA modulus is divisible by ${p} (BR 6.1.6: no factors smaller than ${RSA_SMALL_FACTOR_BOUND})`);
  return bits;
}

/**
 * Describes a public key, or rejects it as weak: curves other than P-256/P-384, key types other
 * than EC, Ed25519 and RSA, and RSA keys {@link checkRsaPublicKey} refuses.
 */
export function describeKey(key: KeyObject): { type: KeyType; label: string } {
  const t = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  if (t === 'ec') {
    if (d.namedCurve === 'prime256v1' || d.namedCurve === 'P-256') return { type: 'p256', label: 'ECDSA P-256' };
    if (d.namedCurve === 'secp384r1' || d.namedCurve === 'P-384') return { type: 'p384', label: 'ECDSA P-384' };
    throw new MutualError('KEY_WEAK', { detail: `curve ${d.namedCurve ?? 'unknown'} is not accepted`, rule: 'key-weak' });
  }
  if (t === 'ed25519') return { type: 'ed25519', label: 'Ed25519' };
  // RSA goes through the SPKI, so both ways of looking at a key apply one set of rules.
  if (t === 'rsa') return describeSpki((key.type === 'private' ? crypto.createPublicKey(key) : key).export({ type: 'spki', format: 'der' }));
  throw new MutualError('KEY_WEAK', { detail: `key type ${t ?? 'unknown'} is not accepted`, rule: 'key-weak' });
}

const EC_CURVES: Record<string, { type: KeyType; label: string }> = {
  [OID.p256]: { type: 'p256', label: 'ECDSA P-256' },
  [OID.p384]: { type: 'p384', label: 'ECDSA P-384' },
};

/**
 * Bounds on parameters of algorithms mutual does not know, checked only for well-formedness:
 * explicit EC domain parameters, the largest common ones, are 6 deep and ~20 elements.
 */
const MAX_PARAMETER_DEPTH = 8;
const MAX_PARAMETER_ELEMENTS = 64;

// The OIDs met in nearly every key and signature, by content bytes: matched without decoding them
// (decoding to dotted strings was the largest cost of reading a CSR here).
const KNOWN_OIDS: { bytes: Buffer; dotted: string }[] = [
  OID.ecPublicKey, OID.p256, OID.p384, OID.ed25519, OID.rsaEncryption, OID.ecdsaWithSHA256, OID.ecdsaWithSHA384,
  OID.ecdsaWithSHA512, OID.sha256WithRSAEncryption, OID.sha384WithRSAEncryption, OID.sha512WithRSAEncryption,
].map((dotted) => ({ bytes: oid(dotted).subarray(2), dotted }));

/** {@link readOid}, answering the common OIDs from {@link KNOWN_OIDS}. */
function readCommonOid(buf: Uint8Array, e: DerElement): string {
  const n = e.end - e.contentStart;
  if (e.tag === Tag.OID) {
    for (const k of KNOWN_OIDS) {
      if (k.bytes.length !== n) continue;
      let i = 0;
      while (i < n && buf[e.contentStart + i] === k.bytes[i]) i++;
      if (i === n) return k.dotted;
    }
  }
  return readOid(buf, e);
}

/** Key algorithms whose AlgorithmIdentifier has no parameters (RFC 8410 3: X25519, X448, Ed25519, Ed448). */
const NO_PARAMETER_KEYS = new Set<string>(['1.3.101.110', '1.3.101.111', OID.ed25519, '1.3.101.113']);

/** A SubjectPublicKeyInfo as read by {@link readSpki}. */
export interface SpkiFields {
  /** The key algorithm OID. */
  algorithm: string;
  /** The named curve OID of an EC key; undefined when the parameters are not a named curve. */
  curve?: string;
  /** The subjectPublicKey bits (without the unused-bits byte). */
  key: Uint8Array;
  /** RSA only: modulus and public exponent magnitudes (no leading zero byte). */
  modulus?: Uint8Array;
  exponent?: Uint8Array;
}

function malformedKey(detail: string): never {
  throw new MutualError('DER_MALFORMED', { detail: `SubjectPublicKeyInfo: ${detail}` });
}

/** A positive DER INTEGER's magnitude, refusing negative and non-minimal encodings (X.690 8.3.2). */
function positiveInteger(buf: Uint8Array, e: DerElement | undefined, what: string): Uint8Array {
  if (!e || e.tag !== Tag.INTEGER) return malformedKey(`${what} is not an INTEGER`);
  const v = contentBytes(buf, e);
  if (v.length === 0 || (v[0] & 0x80) !== 0) malformedKey(`${what} is empty or negative`);
  if (v.length > 1 && v[0] === 0 && (v[1] & 0x80) === 0) malformedKey(`${what} is not minimally encoded`);
  return v[0] === 0 && v.length > 1 ? v.subarray(1) : v;
}

/**
 * Reads a DER SubjectPublicKeyInfo strictly (RFC 5280 4.1.2.7), without judging the key: exactly
 * algorithm and key; parameters NULL for RSA (RFC 3279 2.3.1), present for EC (RFC 5480 2.1.1),
 * absent for the RFC 8410 keys; whole-byte key bits; for RSA an RSAPublicKey of two positive,
 * minimal INTEGERs filling the bits (RFC 8017 A.1.1). Throws DER_MALFORMED or DER_TOO_COMPLEX.
 */
export function readSpki(spki: Uint8Array): SpkiFields {
  const outer = expect(spki, 0, Tag.SEQUENCE, spki.length, 'SubjectPublicKeyInfo');
  if (outer.end !== spki.length) malformedKey('trailing bytes');
  const [algId, bits, extra] = children(spki, outer, 3);
  if (!algId || !bits || extra || algId.tag !== Tag.SEQUENCE || bits.tag !== Tag.BIT_STRING) malformedKey('must be algorithm and subjectPublicKey');
  const [kind, params, more] = children(spki, algId, 3);
  if (!kind || kind.tag !== Tag.OID || more) malformedKey('bad algorithm');
  const algorithm = readCommonOid(spki, kind);
  const value = contentBytes(spki, bits);
  if (value.length < 2 || value[0] !== 0) malformedKey('the key must be whole bytes');
  const key = value.subarray(1);
  const out: SpkiFields = { algorithm, key };
  if (algorithm === OID.rsaEncryption) {
    if (!params || params.tag !== Tag.NULL || params.end !== params.contentStart) malformedKey('RSA parameters must be NULL (RFC 3279 2.3.1)');
    const rsa = readElement(key, 0);
    if (rsa.tag !== Tag.SEQUENCE || rsa.end !== key.length) malformedKey('bad RSAPublicKey');
    const [n, e, extraInt] = children(key, rsa, 3);
    if (extraInt) malformedKey('bad RSAPublicKey');
    out.modulus = positiveInteger(key, n, 'the RSA modulus');
    out.exponent = positiveInteger(key, e, 'the RSA public exponent');
  } else if (algorithm === OID.ecPublicKey) {
    // ECParameters: namedCurve, implicitCurve (NULL) or specifiedCurve (SEQUENCE) (RFC 3279 2.3.5);
    // only a named curve is accepted (RFC 5480 2.1.1), but the others are well-formed DER.
    if (!params || (params.tag !== Tag.OID && params.tag !== Tag.NULL && params.tag !== Tag.SEQUENCE)) malformedKey('EC keys need their curve (RFC 5480 2.1.1)');
    if (params.tag === Tag.OID) out.curve = readCommonOid(spki, params);
    else checkWellFormed(spki, params, MAX_PARAMETER_DEPTH, MAX_PARAMETER_ELEMENTS);
  } else if (NO_PARAMETER_KEYS.has(algorithm) && params) {
    malformedKey(`key algorithm ${algorithm} has no parameters (RFC 8410 3)`);
  } else if (params) {
    checkWellFormed(spki, params, MAX_PARAMETER_DEPTH, MAX_PARAMETER_ELEMENTS);
  }
  return out;
}

/**
 * Describes a DER SubjectPublicKeyInfo without building a KeyObject's details, or rejects it:
 * malformed (DER_MALFORMED, see {@link readSpki}) or weak (KEY_WEAK with `fields.rule`, see
 * {@link KeyRule}). Reading `asymmetricKeyDetails` of a fresh KeyObject costs ~37 us here
 * (OpenSSL computes them on demand), a fifth of the whole issuance budget; the SPKI says the same.
 */
export function describeSpki(spki: Uint8Array): { type: KeyType; label: string } {
  // One issuance describes the same key up to four times (parse, authority, proof of possession,
  // lint); the last accepted key is remembered by its bytes, which are compared, not trusted.
  if (lastDescribed && lastDescribed.spki.equals(spki)) return { ...lastDescribed.result };
  const result = describeSpkiUncached(spki);
  lastDescribed = { spki: Buffer.from(spki), result: { ...result } };
  return result;
}
let lastDescribed: { spki: Buffer; result: { type: KeyType; label: string } } | undefined;

function describeSpkiUncached(spki: Uint8Array): { type: KeyType; label: string } {
  const k = readSpki(spki);
  if (k.algorithm === OID.ecPublicKey) {
    const c = k.curve !== undefined ? EC_CURVES[k.curve] : undefined;
    if (!c) return weak('key-weak', `curve ${k.curve ?? 'unnamed'} is not accepted; use P-256 or P-384`);
    return c;
  }
  if (k.algorithm === OID.ed25519) return { type: 'ed25519', label: 'Ed25519' };
  if (k.modulus && k.exponent) {
    const bits = checkRsaPublicKey(k.modulus, k.exponent);
    return { type: bits >= 4096 ? 'rsa4096' : bits >= 3072 ? 'rsa3072' : 'rsa2048', label: `RSA ${bits}` };
  }
  return weak('key-weak', `key algorithm ${k.algorithm} is not accepted`);
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

/** Reads an AlgorithmIdentifier's OID, with the checks of {@link readSignatureAlgorithm}. */
export function algorithmOid(buf: Uint8Array, offset: number, limit: number): string {
  return readSignatureAlgorithm(buf, expect(buf, offset, Tag.SEQUENCE, limit, 'AlgorithmIdentifier'));
}

/** Signature algorithms whose parameters MUST be absent: ECDSA (RFC 5758 3.2), EdDSA (RFC 8410 3). */
const ABSENT_PARAMETERS = new Set<string>([
  OID.ecdsaWithSHA1, '1.2.840.10045.4.3.1', OID.ecdsaWithSHA256, OID.ecdsaWithSHA384, OID.ecdsaWithSHA512, OID.ed25519, '1.3.101.113',
]);
/** PKCS#1 v1.5 signature algorithms, whose parameters MUST be NULL (RFC 3279 2.2.1, RFC 4055 5, BR 7.1.3.2). */
const NULL_PARAMETERS = new Set<string>([
  '1.2.840.113549.1.1.2', '1.2.840.113549.1.1.4', OID.sha1WithRSAEncryption, '1.2.840.113549.1.1.14',
  OID.sha256WithRSAEncryption, OID.sha384WithRSAEncryption, OID.sha512WithRSAEncryption,
]);
const RSASSA_PSS = '1.2.840.113549.1.1.10';
const MGF1 = '1.2.840.113549.1.1.8';
const SHA1 = '1.3.14.3.2.26';
/** Hashes RSASSA-PSS may name (RFC 4055 2.1): SHA-1 and SHA-2. */
const PSS_HASHES = new Set<string>([SHA1, '2.16.840.1.101.3.4.2.4', '2.16.840.1.101.3.4.2.1', '2.16.840.1.101.3.4.2.2', '2.16.840.1.101.3.4.2.3']);

function badAlgorithm(detail: string): never {
  throw new MutualError('DER_MALFORMED', { detail: `AlgorithmIdentifier: ${detail}` });
}

/** A hash AlgorithmIdentifier inside RSASSA-PSS-params: a SHA-1/SHA-2 OID, parameters NULL or absent (RFC 4055 2.1). */
function readPssHash(buf: Uint8Array, e: DerElement | undefined): string {
  const [id, params, more] = e?.tag === Tag.SEQUENCE ? children(buf, e, 3) : [];
  if (!id || id.tag !== Tag.OID || more || (params && (params.tag !== Tag.NULL || params.end !== params.contentStart))) return badAlgorithm('bad RSASSA-PSS hash');
  const hash = readOid(buf, id);
  if (!PSS_HASHES.has(hash)) badAlgorithm(`RSASSA-PSS hash ${hash} is not SHA-1 or SHA-2`);
  return hash;
}

/**
 * RSASSA-PSS-params (RFC 4055 3.1): the optional [0] hash, [1] MGF1 with its hash, [2] salt length,
 * [3] trailer field, in that order, each once; DER leaves out a field equal to its DEFAULT (SHA-1,
 * MGF1 with SHA-1, 20, 1), so one written out is refused as well.
 */
function checkPssParameters(buf: Uint8Array, params: DerElement | undefined): void {
  if (!params || params.tag !== Tag.SEQUENCE) return badAlgorithm('RSASSA-PSS needs its parameters (RFC 4055 3.1)');
  let last = -1;
  for (const f of children(buf, params, 4)) {
    const n = f.tag - 0xa0;
    if (n <= last || n > 3) badAlgorithm('bad RSASSA-PSS-params');
    last = n;
    const [inner, extra] = children(buf, f, 2);
    if (!inner || extra) badAlgorithm('bad RSASSA-PSS-params');
    if (n === 0 && readPssHash(buf, inner) === SHA1) badAlgorithm('RSASSA-PSS hash SHA-1 is the DEFAULT and must be left out');
    if (n === 1) {
      const [id, hash, more] = inner.tag === Tag.SEQUENCE ? children(buf, inner, 3) : [];
      if (!id || id.tag !== Tag.OID || more || readOid(buf, id) !== MGF1) badAlgorithm('RSASSA-PSS mask generation must be MGF1');
      if (readPssHash(buf, hash) === SHA1) badAlgorithm('MGF1 with SHA-1 is the DEFAULT and must be left out');
    }
    if (n === 2 || n === 3) {
      const v = inner.tag === Tag.INTEGER ? contentBytes(buf, inner) : undefined;
      if (!v || v.length === 0 || v.length > 2 || (v[0] & 0x80) !== 0 || (v.length === 2 && v[0] === 0 && (v[1] & 0x80) === 0)) badAlgorithm('bad RSASSA-PSS integer');
      const x = v.length === 2 ? v[0] * 256 + v[1] : v[0];
      if (n === 2 && x === 20) badAlgorithm('RSASSA-PSS salt length 20 is the DEFAULT and must be left out');
      if (n === 3) badAlgorithm('RSASSA-PSS trailer field 1 is the DEFAULT and must be left out; no other exists');
    }
  }
}

/**
 * Reads a signature AlgorithmIdentifier (RFC 5280 4.1.1.2) strictly and returns its OID: an
 * OBJECT IDENTIFIER and at most one parameters element; for ECDSA and EdDSA no parameters (RFC
 * 5758 3.2, RFC 8410 3), for RSA PKCS#1 v1.5 exactly NULL, `05 00` (RFC 4055 5, BR 7.1.3.2), for
 * RSASSA-PSS well-formed RSASSA-PSS-params (RFC 4055 3.1). The identifier is outside what a
 * signature covers, so nothing else vouches for it. Throws DER_MALFORMED; each reader turns that
 * into its own code (CSR_MALFORMED, CERT_MALFORMED, CRL_MALFORMED).
 */
export function readSignatureAlgorithm(buf: Uint8Array, e: DerElement): string {
  const [id, params, extra] = e.tag === Tag.SEQUENCE ? children(buf, e, 3) : [];
  if (!id || id.tag !== Tag.OID || extra) return badAlgorithm('must be an OID and at most one parameters element');
  const algorithm = readCommonOid(buf, id);
  if (ABSENT_PARAMETERS.has(algorithm) && params) badAlgorithm(`${algorithm} takes no parameters (RFC 5758 3.2, RFC 8410 3)`);
  if (NULL_PARAMETERS.has(algorithm) && (!params || params.tag !== Tag.NULL || params.end !== params.contentStart)) {
    badAlgorithm(`the parameters of ${algorithm} must be NULL (RFC 4055 5)`);
  }
  if (algorithm === RSASSA_PSS) checkPssParameters(buf, params);
  else if (params) checkWellFormed(buf, params, MAX_PARAMETER_DEPTH, MAX_PARAMETER_ELEMENTS);
  return algorithm;
}
