/**
 * A key on a token as mutual uses it: the private key object found by the URI (CKA_LABEL and/or
 * CKA_ID, class private, exactly one), checked non-extractable and sensitive, and its public half
 * read from the public key object with the same CKA_ID, as a node KeyObject.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { MutualError } from '../../core/errors.ts';
import { bitString, expect, contentBytes, oid, readElement, seq, Tag } from '../../core/der.ts';
import { OID } from '../../core/oids.ts';
import { CKA, CKK_EC, CKK_EC_EDWARDS, CKK_RSA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, type Attribute, type Cryptoki } from './binding.ts';
import { formatPkcs11Uri, type Pkcs11Uri } from './uri.ts';

/** How a token key signs: ECDSA, RSA, or Ed25519 (CKM_EDDSA). */
export type KeyKind = 'ec' | 'rsa' | 'ed25519';

/** The private key handle, its kind, and its public key. */
export interface FoundKey {
  handle: Buffer;
  kind: KeyKind;
  publicKey: KeyObject;
  /** The public key's SubjectPublicKeyInfo, compared after a reconnect. */
  spki: Buffer;
  /** Bytes of a raw signature: 2 x field size (ECDSA r||s), modulus size (RSA), 64 (Ed25519). */
  signatureBytes: number;
  /** CKA_LABEL and CKA_ID, for the key reference. */
  label: string;
  id: Buffer;
}

/** Finds up to `max` objects matching `template`. */
export function findObjects(ck: Cryptoki, session: Buffer, template: Attribute[], max = 2): Buffer[] {
  ck.C_FindObjectsInit(session, template);
  try {
    return ck.C_FindObjects(session, max);
  } finally {
    ck.C_FindObjectsFinal(session);
  }
}

function attributes(ck: Cryptoki, session: Buffer, handle: Buffer, types: number[]): Map<number, Buffer> {
  return new Map(ck.C_GetAttributeValue(session, handle, types.map((type) => ({ type }))).map((a) => [a.type, a.value]));
}

const bool = (v: Buffer | undefined): boolean => v !== undefined && v.length > 0 && v[0] !== 0;
const ulong = (v: Buffer | undefined): number => (v && v.length >= 4 ? v.readUInt32LE(0) : -1);

/** The key's uncompressed point length, by curve: CKA_EC_POINT may hold it raw or inside an OCTET STRING. */
const POINT_BYTES: Record<string, number> = { [OID.p256]: 65, [OID.p384]: 97 };

/** An EC public key from CKA_EC_PARAMS (the curve's OID, DER) and CKA_EC_POINT. */
export function ecPublicKey(params: Buffer, point: Buffer): { publicKey: KeyObject; spki: Buffer } {
  const curve = expect(params, 0, Tag.OID, params.length, 'CKA_EC_PARAMS');
  const curveOid = params.subarray(0, curve.end);
  const size = POINT_BYTES[oidDotted(curveOid)];
  if (size === undefined) throw new MutualError('HSM_MECHANISM_UNSUPPORTED', { detail: 'the key is on a curve other than P-256 and P-384' });
  let raw = point;
  if (point.length !== size) {
    // PKCS#11 v2.40 says DER OCTET STRING; some modules give the bare point.
    const e = readElement(point, 0);
    if (e.tag !== Tag.OCTET_STRING || e.end !== point.length) throw new MutualError('DER_MALFORMED', { detail: 'CKA_EC_POINT is not the curve\'s point' });
    raw = Buffer.from(contentBytes(point, e));
  }
  const spki = seq(seq(oid(OID.ecPublicKey), curveOid), bitString(raw));
  return { publicKey: crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }), spki };
}

/**
 * An Ed25519 public key from CKA_EC_POINT (the 32 bytes, in an OCTET STRING or bare). CKA_EC_PARAMS
 * names the curve as the OID id-Ed25519 or the PrintableString "edwards25519" (PKCS#11 3.0 2.3.10);
 * only Ed25519 keys are made as kind ed25519, so it is not read.
 */
export function ed25519PublicKey(point: Buffer): { publicKey: KeyObject; spki: Buffer } {
  let raw = point;
  if (point.length !== 32) {
    const e = readElement(point, 0);
    if (e.tag !== Tag.OCTET_STRING || e.end !== point.length || e.end - e.contentStart !== 32) throw new MutualError('DER_MALFORMED', { detail: 'CKA_EC_POINT is not an Ed25519 key' });
    raw = Buffer.from(contentBytes(point, e));
  }
  const spki = seq(seq(oid(OID.ed25519)), bitString(raw));
  return { publicKey: crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }), spki };
}

function oidDotted(der: Buffer): string {
  for (const dotted of [OID.p256, OID.p384]) if (oid(dotted).equals(der)) return dotted;
  return '';
}

/** An RSA public key from CKA_MODULUS and CKA_PUBLIC_EXPONENT. */
export function rsaPublicKey(modulus: Buffer, exponent: Buffer): { publicKey: KeyObject; spki: Buffer } {
  const publicKey = crypto.createPublicKey({ key: { kty: 'RSA', n: modulus.toString('base64url'), e: exponent.toString('base64url') }, format: 'jwk' });
  return { publicKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

/** The public key of a public key object (EC or RSA). */
export function readPublicKey(ck: Cryptoki, session: Buffer, handle: Buffer, kind: KeyKind): { publicKey: KeyObject; spki: Buffer } {
  if (kind === 'ed25519') return ed25519PublicKey(attributes(ck, session, handle, [CKA.EC_POINT]).get(CKA.EC_POINT)!);
  if (kind === 'ec') {
    const a = attributes(ck, session, handle, [CKA.EC_PARAMS, CKA.EC_POINT]);
    return ecPublicKey(a.get(CKA.EC_PARAMS)!, a.get(CKA.EC_POINT)!);
  }
  const a = attributes(ck, session, handle, [CKA.MODULUS, CKA.PUBLIC_EXPONENT]);
  return rsaPublicKey(a.get(CKA.MODULUS)!, a.get(CKA.PUBLIC_EXPONENT)!);
}

/**
 * Finds the key the URI names (object= and/or id=; see the file's top comment).
 * @throws MutualError `PKCS11_URI_INVALID` (no object or id, or several keys match);
 *   `HSM_KEY_NOT_FOUND`; `HSM_KEY_EXTRACTABLE`; `HSM_MECHANISM_UNSUPPORTED` for a key that is
 *   neither EC (P-256, P-384), Ed25519 nor RSA.
 */
export function findKey(ck: Cryptoki, session: Buffer, u: Pkcs11Uri): FoundKey {
  const label = u.path.object;
  if (label === undefined && u.id === undefined) throw new MutualError('PKCS11_URI_INVALID', { detail: 'a key reference needs object= or id=' });
  if (u.path.type !== undefined && u.path.type !== 'private') throw new MutualError('PKCS11_URI_INVALID', { detail: 'a signing key reference names type=private (or no type)' });
  const template: Attribute[] = [{ type: CKA.CLASS, value: CKO_PRIVATE_KEY }];
  if (label !== undefined) template.push({ type: CKA.LABEL, value: label });
  if (u.id !== undefined) template.push({ type: CKA.ID, value: u.id });
  const named = formatPkcs11Uri({ ...u, modulePath: undefined, pinSource: undefined, rsa: undefined, vendorQuery: [] });
  const found = findObjects(ck, session, template);
  if (found.length === 0) throw new MutualError('HSM_KEY_NOT_FOUND', { detail: `no private key ${named} on the token` });
  if (found.length > 1) throw new MutualError('PKCS11_URI_INVALID', { detail: `several private keys match ${named}; add id= to the URI` });
  const handle = found[0];
  const a = attributes(ck, session, handle, [CKA.KEY_TYPE, CKA.EXTRACTABLE, CKA.SENSITIVE, CKA.ID, CKA.LABEL]);
  if (bool(a.get(CKA.EXTRACTABLE)) || !bool(a.get(CKA.SENSITIVE))) {
    throw new MutualError('HSM_KEY_EXTRACTABLE', { detail: `the key ${named} is ${bool(a.get(CKA.EXTRACTABLE)) ? 'extractable' : 'not sensitive'}` });
  }
  const keyType = ulong(a.get(CKA.KEY_TYPE));
  const kind: KeyKind | undefined = keyType === CKK_EC ? 'ec' : keyType === CKK_RSA ? 'rsa' : keyType === CKK_EC_EDWARDS ? 'ed25519' : undefined;
  if (!kind) throw new MutualError('HSM_MECHANISM_UNSUPPORTED', { detail: `the key ${named} has key type ${keyType}; mutual signs with EC, Ed25519 and RSA token keys` });
  const id = a.get(CKA.ID) ?? Buffer.alloc(0);
  const keyLabel = a.get(CKA.LABEL)?.toString('utf8') ?? '';
  const pub = findObjects(ck, session, [{ type: CKA.CLASS, value: CKO_PUBLIC_KEY }, id.length ? { type: CKA.ID, value: id } : { type: CKA.LABEL, value: keyLabel }]);
  if (pub.length !== 1) {
    throw new MutualError('HSM_KEY_NOT_FOUND', { detail: `${pub.length === 0 ? 'no' : 'more than one'} public key object with the id of ${named}` });
  }
  const { publicKey, spki } = readPublicKey(ck, session, pub[0], kind);
  const d = publicKey.asymmetricKeyDetails ?? {};
  const signatureBytes = kind === 'ed25519' ? 64 : kind === 'rsa' ? Math.ceil((d.modulusLength ?? 0) / 8) : d.namedCurve === 'secp384r1' ? 96 : 64;
  return { handle, kind, publicKey, spki, signatureBytes, label: keyLabel, id };
}
