/**
 * PKCS#10 certificate signing requests (RFC 2986): a strict, bounded parser for the few fields
 * mutual reads, proof-of-possession by verifying the CSR's signature over its own
 * CertificationRequestInfo bytes, and a builder (for tests, benchmarks and the offline flow).
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import {
  Tag, bitString, checkOid, checkWellFormed, children, contentBytes, elementBytes, expect, explicit, integer, oid, readElement, readOid, seq, set, octetString,
  type DerElement,
} from './der.ts';
import { MutualError, isMutualError } from './errors.ts';
import { OID } from './oids.ts';
import { ACCEPTED_SIGNATURE_OIDS, describeSpki, readSignatureAlgorithm, readSpki, signatureAlgorithmFor, spkiDer } from './algorithms.ts';
import type { Signer } from './signer.ts';
import { bytesToIp, encodeGeneralNames, encodeName, type SubjectAltNames } from './names.ts';

/** Largest CSR accepted, in DER bytes (an RSA-4096 CSR with 100 names is ~4 KB). */
export const MAX_CSR_BYTES = 16 * 1024;
/** Most attributes, extensions, RDNs or names read from one CSR. */
export const MAX_CSR_ELEMENTS = 128;
/** Deepest nesting accepted inside a CSR attribute mutual skips (a Name or an extension is 4-6 deep). */
export const MAX_CSR_DEPTH = 16;

// OIDs are compared by their content bytes (checked with checkOid first): decoding them to dotted
// strings was a fifth of parsing a CSR.
const oidKey = (dotted: string): string => oid(dotted).subarray(2).toString('latin1');
const EXTENSION_REQUEST = oid(OID.extensionRequest).subarray(2);
const COMMON_NAME = oid(OID.commonName).subarray(2);
/** True when `e` is a well-formed OID with these content bytes. */
function isOid(der: Buffer, e: DerElement, content: Buffer): boolean {
  checkOid(der, e);
  return e.end - e.contentStart === content.length && der.compare(content, 0, content.length, e.contentStart, e.end) === 0;
}

/** Extensions a CSR may ask for, by OID content bytes; the profile decides their values, except subjectAltName. */
const TOLERATED_EXTENSIONS = new Map<string, string>(
  [OID.subjectAltName, OID.keyUsage, OID.extKeyUsage, OID.basicConstraints, OID.subjectKeyIdentifier].map((o) => [oidKey(o), o]),
);

/** What mutual reads from a CSR. */
export interface ParsedCsr {
  /** The DER SubjectPublicKeyInfo, copied as is into the certificate. */
  spki: Buffer;
  /** The subject's CN, if any (informational: names come from the SANs and the policy). */
  commonName?: string;
  /** Requested subjectAltNames. */
  names: SubjectAltNames;
  /** EKU OIDs the CSR asks for (checked against the profile). */
  requestedEku: string[];
  /** True when the CSR asks for a CA certificate. */
  requestsCa: boolean;
  /** Signed bytes and signature, for proof of possession. */
  signedBytes: Buffer;
  signatureOid: string;
  signature: Buffer;
}

const malformed = (detail: string): never => {
  throw new MutualError('CSR_MALFORMED', { detail });
};

/**
 * Parses a DER CSR strictly: DER's rules, the signature AlgorithmIdentifier's parameters as its
 * algorithm requires, and a well-formed SubjectPublicKeyInfo (its strength is judged by
 * {@link verifyCsr}). Throws CSR_MALFORMED, INPUT_TOO_LARGE or CSR_FORBIDDEN_EXTENSION.
 */
export function parseCsr(der: Uint8Array): ParsedCsr {
  if (der.length > MAX_CSR_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `CSR of ${der.length} bytes; the limit is ${MAX_CSR_BYTES}` });
  try {
    return parseCsrUnchecked(Buffer.from(der.buffer, der.byteOffset, der.byteLength));
  } catch (e) {
    if (isMutualError(e) && (e.code === 'DER_MALFORMED' || e.code === 'DER_TOO_COMPLEX')) throw new MutualError('CSR_MALFORMED', { detail: e.fields.detail }, { cause: e });
    throw e;
  }
}

function parseCsrUnchecked(der: Buffer): ParsedCsr {
  const outer = expect(der, 0, Tag.SEQUENCE, der.length, 'CertificationRequest');
  if (outer.end !== der.length) malformed('trailing bytes after the CSR');
  const [info, sigAlg, sig, extra] = children(der, outer, 4);
  if (!info || !sigAlg || !sig || extra) malformed('CertificationRequest must have exactly three parts');
  if (info.tag !== Tag.SEQUENCE || sigAlg.tag !== Tag.SEQUENCE || sig.tag !== Tag.BIT_STRING) malformed('bad CertificationRequest structure');
  // Strictly: the signatureAlgorithm is not covered by the signature, so odd parameters would pass.
  const signatureOid = readSignatureAlgorithm(der, sigAlg);
  const sigBits = contentBytes(der, sig);
  if (sigBits.length < 2 || sigBits[0] !== 0) malformed('bad signature BIT STRING');

  const [version, subject, spki, attrs, more] = children(der, info, 5);
  if (!version || version.tag !== Tag.INTEGER || version.end - version.contentStart !== 1 || der[version.contentStart] !== 0) malformed('version must be 0 (v1)');
  if (!subject || subject.tag !== Tag.SEQUENCE) malformed('missing subject');
  if (!spki || spki.tag !== Tag.SEQUENCE) malformed('missing SubjectPublicKeyInfo');
  if (!attrs || attrs.tag !== 0xa0 || more) malformed('missing or extra attributes');
  // The key's structure (not yet its strength: that is describeSpki's, before proof of possession).
  const key = readSpki(elementBytes(der, spki));
  if (key.algorithm === OID.ecPublicKey && key.curve === undefined) malformed('EC keys must name their curve (RFC 5480 2.1.1)');

  const out: ParsedCsr = {
    spki: Buffer.from(elementBytes(der, spki)),
    names: { dns: [], ip: [], uri: [] },
    requestedEku: [],
    requestsCa: false,
    signedBytes: Buffer.from(elementBytes(der, info)),
    signatureOid,
    signature: Buffer.from(sigBits.subarray(1)),
  };
  out.commonName = readCommonName(der, subject);
  for (const attr of children(der, attrs, MAX_CSR_ELEMENTS)) {
    // Attribute ::= SEQUENCE { type, values SET SIZE(1..MAX) } (RFC 2986 4.1)
    const [type, values, extra] = attr.tag === Tag.SEQUENCE ? children(der, attr, 3) : [];
    if (!type || type.tag !== Tag.OID || !values || values.tag !== Tag.SET || values.end === values.contentStart || extra) malformed('bad attribute');
    if (!isOid(der, type, EXTENSION_REQUEST)) {
      // Ignored (challengePassword and the like), but carried in the signed bytes: well-formed all the same.
      checkWellFormed(der, values, MAX_CSR_DEPTH, MAX_CSR_ELEMENTS);
      continue;
    }
    const [exts, more] = children(der, values, 2);
    if (!exts || more || exts.tag !== Tag.SEQUENCE) malformed('bad extensionRequest');
    for (const ext of children(der, exts, MAX_CSR_ELEMENTS)) readRequestedExtension(der, ext, out);
  }
  return out;
}

/**
 * Universal string types accepted in a CSR's subject, with the unit their length must be a multiple
 * of: UTF8String, NumericString, PrintableString, IA5String, VisibleString, and BMPString (UTF-16).
 * TeletexString and UniversalString are legacy (RFC 5280 4.1.2.4) and refused.
 */
const NAME_STRING_TAGS = new Map<number, number>([[0x0c, 1], [0x12, 1], [0x13, 1], [0x16, 1], [0x1a, 1], [0x1e, 2]]);

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A Name string's text; UTF8String must be valid UTF-8 and the ASCII types ASCII (X.680 41). */
function readNameString(v: Uint8Array, tag: number): string {
  if (tag === 0x0c && v.some((b) => b >= 0x80)) {
    try {
      return strictUtf8.decode(v);
    } catch {
      return malformed('a UTF8String in the subject is not valid UTF-8');
    }
  }
  if (tag === 0x1e) return Buffer.from(v).swap16().toString('utf16le');
  if (v.some((b) => b >= 0x80)) malformed('an ASCII string type in the subject holds a non-ASCII byte');
  return Buffer.from(v).toString('latin1');
}

function readCommonName(der: Buffer, subject: DerElement): string | undefined {
  let cn: string | undefined;
  // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue) (RFC 5280 4.1.2.4)
  for (const rdn of children(der, subject, MAX_CSR_ELEMENTS)) {
    if (rdn.tag !== Tag.SET || rdn.end === rdn.contentStart) malformed('bad subject RDN');
    for (const atv of children(der, rdn, MAX_CSR_ELEMENTS)) {
      const [type, value, extra] = atv.tag === Tag.SEQUENCE ? children(der, atv, 3) : [];
      const unit = value && NAME_STRING_TAGS.get(value.tag);
      if (!type || type.tag !== Tag.OID || !value || extra || !unit || (value.end - value.contentStart) % unit !== 0) malformed('bad subject attribute');
      const text = readNameString(contentBytes(der, value), value.tag);
      if (isOid(der, type, COMMON_NAME)) cn = text;
    }
  }
  return cn;
}

function readRequestedExtension(der: Buffer, ext: DerElement, out: ParsedCsr): void {
  const parts = ext.tag === Tag.SEQUENCE ? children(der, ext, 4) : [];
  const id = parts[0];
  const value = parts[parts.length - 1];
  if (parts.length < 2 || parts.length > 3 || id.tag !== Tag.OID || value.tag !== Tag.OCTET_STRING || (parts.length === 3 && (parts[1].tag !== Tag.BOOLEAN || parts[1].end - parts[1].contentStart !== 1))) malformed('bad requested extension');
  checkOid(der, id);
  const extOid = TOLERATED_EXTENSIONS.get(der.toString('latin1', id.contentStart, id.end));
  if (!extOid) throw new MutualError('CSR_FORBIDDEN_EXTENSION', { detail: `extension ${readOid(der, id)} cannot be requested` });
  const inner = readElement(der, value.contentStart, value.end);
  if (inner.end !== value.end) malformed(`extension ${extOid}: trailing bytes in its value`);
  if (extOid !== OID.subjectKeyIdentifier && extOid !== OID.keyUsage && inner.tag !== Tag.SEQUENCE) malformed(`extension ${extOid}: bad value`);
  if (extOid === OID.subjectAltName) {
    for (const gn of children(der, inner, MAX_CSR_ELEMENTS)) {
      const v = contentBytes(der, gn);
      if (gn.tag === 0x82) out.names.dns.push(Buffer.from(v).toString('latin1'));
      else if (gn.tag === 0x86) out.names.uri.push(Buffer.from(v).toString('latin1'));
      else if (gn.tag === 0x87 && (v.length === 4 || v.length === 16)) out.names.ip.push(bytesToIp(v));
      else throw new MutualError('CSR_FORBIDDEN_EXTENSION', { detail: `subjectAltName of type [${gn.tag & 0x1f}] is not issued; use DNS, IP or a spiffe:// URI` });
    }
  } else if (extOid === OID.extKeyUsage) {
    for (const k of children(der, inner, MAX_CSR_ELEMENTS)) {
      if (k.tag !== Tag.OID) malformed('extKeyUsage holds something other than OIDs');
      out.requestedEku.push(readOid(der, k));
    }
  } else if (extOid === OID.basicConstraints) {
    const [ca] = children(der, inner, 2);
    if (ca && ca.tag === Tag.BOOLEAN && ca.end > ca.contentStart && der[ca.contentStart] !== 0) out.requestsCa = true;
  }
}

/**
 * The CSR's public key: KEY_WEAK for a key mutual does not issue for, CSR_UNSUPPORTED_ALGORITHM for
 * a signature algorithm or key not accepted. The key is judged before its signature is looked at:
 * an RSA key with exponent 1 "verifies" any PKCS#1 v1.5 encoded digest as its own signature, so a
 * signature check alone proves no possession (issue 13).
 */
function csrPublicKey(csr: ParsedCsr): KeyObject {
  try {
    describeSpki(csr.spki);
  } catch (e) {
    if (isMutualError(e, 'DER_MALFORMED') || isMutualError(e, 'DER_TOO_COMPLEX')) throw new MutualError('CSR_MALFORMED', { detail: e.fields.detail }, { cause: e });
    throw e;
  }
  if (!ACCEPTED_SIGNATURE_OIDS.has(csr.signatureOid)) {
    throw new MutualError('CSR_UNSUPPORTED_ALGORITHM', { detail: `signature algorithm ${csr.signatureOid} (SHA-1 and RSA-PSS are not accepted)` });
  }
  try {
    // As PEM text, not { key, format: 'der' }: for an object argument createPublicKey first probes
    // whether it is a KeyObject or CryptoKey by throwing and catching inside Node, which cost more
    // than the base64 here (measured 2-10 us per key).
    return crypto.createPublicKey(`-----BEGIN PUBLIC KEY-----\n${csr.spki.toString('base64')}\n-----END PUBLIC KEY-----\n`);
  } catch (e) {
    throw new MutualError('CSR_UNSUPPORTED_ALGORITHM', { detail: 'the public key could not be read' }, { cause: e });
  }
}

/**
 * Proof of possession: checks the CSR's key (as {@link describeSpki}) and then verifies the CSR
 * signature with it. Returns the public key. Throws KEY_WEAK, CSR_MALFORMED,
 * CSR_UNSUPPORTED_ALGORITHM or CSR_BAD_SIGNATURE.
 */
export function verifyCsr(csr: ParsedCsr): KeyObject {
  const key = csrPublicKey(csr);
  let ok = false;
  try {
    ok = crypto.verify(ACCEPTED_SIGNATURE_OIDS.get(csr.signatureOid) ?? null, csr.signedBytes, key, csr.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new MutualError('CSR_BAD_SIGNATURE');
  return key;
}

/**
 * {@link verifyCsr} with the signature check on libuv's thread pool (the key is still read on the
 * calling thread): for servers on several cores, where the event loop is the scarce thread.
 */
export async function verifyCsrOffloaded(csr: ParsedCsr): Promise<KeyObject> {
  const key = csrPublicKey(csr);
  const ok = await new Promise<boolean>((resolve) => {
    try {
      crypto.verify(ACCEPTED_SIGNATURE_OIDS.get(csr.signatureOid) ?? null, csr.signedBytes, key, csr.signature, (e, valid) => resolve(!e && valid));
    } catch {
      resolve(false);
    }
  });
  if (!ok) throw new MutualError('CSR_BAD_SIGNATURE');
  return key;
}

/** Options for {@link buildCsr}. */
export interface BuildCsrOptions {
  privateKey: KeyObject;
  commonName: string;
  organization?: string;
  names?: SubjectAltNames;
  /** Ask for a CA certificate (basicConstraints cA=TRUE), for the offline intermediate flow. */
  ca?: boolean;
}

/** Builds and signs a DER CSR with a key the caller holds (a leaf key). */
export function buildCsr(o: BuildCsrOptions): Buffer {
  const publicKey = crypto.createPublicKey(o.privateKey);
  const info = csrInfo(publicKey.export({ type: 'spki', format: 'der' }), o);
  const alg = signatureAlgorithmFor(publicKey);
  return seq(info, alg.der, bitString(crypto.sign(alg.hash, info, o.privateKey)));
}

/** Options for {@link signCsr}. */
export interface SignCsrOptions extends Omit<BuildCsrOptions, 'privateKey'> {
  /** Signs with the key the CSR asks a certificate for (a CA key, behind the Signer seam). */
  signer: Signer;
}

/** Builds a DER CSR and signs it through a Signer (an intermediate's key, for the offline root). */
export async function signCsr(o: SignCsrOptions): Promise<Buffer> {
  const info = csrInfo(spkiDer(o.signer.publicKey), o);
  return seq(info, o.signer.algorithm.der, bitString(await o.signer.sign(info)));
}

/** The CertificationRequestInfo (RFC 2986 section 4.1) of a CSR for `spki`. */
function csrInfo(spki: Buffer, o: Omit<BuildCsrOptions, 'privateKey'>): Buffer {
  const exts: Buffer[] = [];
  if (o.names && o.names.dns.length + o.names.ip.length + o.names.uri.length > 0) {
    exts.push(seq(oid(OID.subjectAltName), octetString(encodeGeneralNames(o.names))));
  }
  if (o.ca) exts.push(seq(oid(OID.basicConstraints), octetString(seq(Buffer.from([Tag.BOOLEAN, 1, 0xff])))));
  const attrs = exts.length ? [seq(oid(OID.extensionRequest), set(seq(...exts)))] : [];
  return seq(integer(0), encodeName({ commonName: o.commonName, organization: o.organization }), spki, explicit(0, ...attrs));
}
