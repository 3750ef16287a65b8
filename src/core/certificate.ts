/**
 * Reading X.509 certificates (RFC 5280 4.1): the fields mutual uses for inventory, revocation,
 * verification and inspection, read with the bounded DER reader. Signature checks and chain
 * building stay with OpenSSL (node:crypto's X509Certificate, TLS).
 */
import crypto from 'node:crypto';
import { Tag, children, contentBytes, elementBytes, expect, readElement, readOid, readTime, type DerElement } from './der.ts';
import { MutualError, isMutualError } from './errors.ts';
import { OID } from './oids.ts';
import { bytesToIp, type IpRange, type SubjectAltNames } from './names.ts';
import { MAX_OBJECT_BYTES } from './pem.ts';
import { readSignature, readSpki } from './algorithms.ts';
import type { SignatureScheme } from './verify-signature.ts';

/** Most extensions, names or RDNs read from one certificate. */
export const MAX_CERT_ELEMENTS = 256;

/** The fields of a certificate mutual reads. */
export interface CertificateInfo {
  der: Buffer;
  /** Serial as lowercase hex, without leading zero bytes. */
  serial: string;
  serialBytes: Buffer;
  /** DER of the issuer and subject Names. */
  issuerName: Buffer;
  subjectName: Buffer;
  /** Subject as text (`CN=..., O=...`). */
  subject: string;
  issuer: string;
  commonName?: string;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;
  subjectKeyId?: Buffer;
  authorityKeyId?: Buffer;
  isCa: boolean;
  pathLen?: number;
  eku: string[];
  names: SubjectAltNames;
  /** Signature algorithm OID (outer). */
  signatureOid: string;
  /** How its signature is verified; undefined when mutual does not accept the algorithm (see readSignature). */
  signatureScheme?: SignatureScheme;
  /** SHA-256 of the DER, lowercase hex. */
  fingerprint: string;
  /** NameConstraints permitted subtrees, for CA certificates that have them. */
  permitted?: { dns: string[]; ip: IpRange[]; uri: string[] };
  /** OIDs of the extensions marked critical (a verifier refuses those it does not process, RFC 5280 4.2). */
  criticalExtensions: string[];
  /** How many GeneralNames the subjectAltName holds, of every type (`names` keeps DNS, URI and IP only); set when it is present. */
  sanEntries?: number;
  /** The acmeIdentifier extension's Authorization, the OCTET STRING's contents (a tls-alpn-01 certificate, RFC 8737 section 3). */
  acmeIdentifier?: Buffer;
}

/**
 * The universal string types an attribute value of a Name may have (X.520 DirectoryString and
 * the IA5String/PrintableString attributes), legacy ones included since certificates from other
 * CAs are read too; each with the unit its length is a multiple of (BMPString UTF-16, UniversalString UTF-32).
 */
const NAME_STRING_UNITS = new Map<number, number>([[0x0c, 1], [0x12, 1], [0x13, 1], [0x14, 1], [0x16, 1], [0x1a, 1], [0x1c, 4], [0x1e, 2]]);

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of a Name string: UTF8String must be valid UTF-8 (OpenSSL refuses the certificate otherwise). */
function nameValue(v: Uint8Array, tag: number): string {
  // BMPString (UCS-2) and UniversalString (UCS-4) hold code points, never surrogates (OpenSSL refuses them).
  const bad = (): never => {
    throw new MutualError('DER_MALFORMED', { detail: 'a BMPString or UniversalString in a Name holds an invalid code point' });
  };
  if (tag === 0x1e || tag === 0x1c) {
    const step = tag === 0x1e ? 2 : 4;
    let text = '';
    for (let i = 0; i < v.length; i += step) {
      const c = step === 2 ? v[i] * 256 + v[i + 1] : ((v[i] * 256 + v[i + 1]) * 256 + v[i + 2]) * 256 + v[i + 3];
      if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) bad();
      text += String.fromCodePoint(c);
    }
    return text;
  }
  if (tag !== 0x0c) return Buffer.from(v).toString('latin1');
  try {
    return strictUtf8.decode(v);
  } catch {
    throw new MutualError('DER_MALFORMED', { detail: 'a UTF8String in a Name is not valid UTF-8' });
  }
}

const ATTR_NAMES: Record<string, string> = { [OID.commonName]: 'CN', [OID.organizationName]: 'O', [OID.organizationalUnitName]: 'OU' };

/** Renders a DER Name as `CN=..., O=...` (most significant RDN last, like OpenSSL's oneline order reversed). */
export function nameToString(buf: Uint8Array, name: DerElement): { text: string; commonName?: string } {
  const parts: string[] = [];
  let commonName: string | undefined;
  // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue) (RFC 5280 4.1.2.4)
  if (name.tag !== Tag.SEQUENCE) throw new MutualError('DER_MALFORMED', { detail: 'a Name is a SEQUENCE' });
  for (const rdn of children(buf, name, MAX_CERT_ELEMENTS)) {
    if (rdn.tag !== Tag.SET) throw new MutualError('DER_MALFORMED', { detail: 'bad RelativeDistinguishedName' });
    for (const atv of children(buf, rdn, MAX_CERT_ELEMENTS)) {
      const [type, value, extra] = atv.tag === Tag.SEQUENCE ? children(buf, atv, 3) : [];
      const unit = value && NAME_STRING_UNITS.get(value.tag);
      if (!type || type.tag !== Tag.OID || !value || extra || !unit || (value.end - value.contentStart) % unit !== 0) throw new MutualError('DER_MALFORMED', { detail: 'bad name attribute' });
      const id = readOid(buf, type);
      const v = nameValue(contentBytes(buf, value), value.tag);
      if (id === OID.commonName) commonName = v;
      parts.push(`${ATTR_NAMES[id] ?? id}=${v}`);
    }
  }
  return { text: parts.reverse().join(', '), commonName };
}

/** Parses a DER certificate. Throws CERT_MALFORMED or INPUT_TOO_LARGE. */
export function parseCertificate(der: Uint8Array): CertificateInfo {
  if (der.length > MAX_OBJECT_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `certificate of ${der.length} bytes` });
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  try {
    return parseUnchecked(buf);
  } catch (e) {
    if (isMutualError(e, 'DER_MALFORMED') || isMutualError(e, 'DER_TOO_COMPLEX')) throw new MutualError('CERT_MALFORMED', { detail: e.fields.detail }, { cause: e });
    throw e;
  }
}

function parseUnchecked(buf: Buffer): CertificateInfo {
  const bad = (detail: string): never => {
    throw new MutualError('CERT_MALFORMED', { detail });
  };
  const outer = expect(buf, 0, Tag.SEQUENCE, buf.length, 'Certificate');
  if (outer.end !== buf.length) bad('trailing bytes after the certificate');
  const [tbs, sigAlg, sig, extra] = children(buf, outer, 4);
  if (!tbs || !sigAlg || !sig || extra || tbs.tag !== Tag.SEQUENCE || sig.tag !== Tag.BIT_STRING) bad('Certificate must be tbs, algorithm, signature');
  const sigBits = contentBytes(buf, sig);
  if (sigBits.length < 2 || sigBits[0] !== 0) bad('bad signatureValue BIT STRING');
  const f = children(buf, tbs, 11);
  let i = 0;
  if (f[0]?.tag === 0xa0) {
    // version [0] EXPLICIT INTEGER: v2 (1) or v3 (2); v1 is the DEFAULT, left out in DER (RFC 5280 4.1.2.1).
    const v = contentBytes(buf, f[0]);
    if (v.length !== 3 || v[0] !== Tag.INTEGER || v[1] !== 1 || (v[2] !== 1 && v[2] !== 2)) bad('version must be v2 or v3 (RFC 5280 4.1.2.1)');
    i++;
  }
  const [serialEl, innerAlg, issuerEl, validityEl, subjectEl, spkiEl] = f.slice(i);
  if (!serialEl || serialEl.tag !== Tag.INTEGER || !issuerEl || !validityEl || !subjectEl || !spkiEl) bad('TBSCertificate is missing fields');
  const sn = contentBytes(buf, serialEl);
  if (sn.length === 0 || (sn[0] & 0x80) !== 0 || (sn.length > 1 && sn[0] === 0 && (sn[1] & 0x80) === 0)) bad('serialNumber must be a positive, minimally encoded INTEGER (RFC 5280 4.1.2.2)');
  if (issuerEl.tag !== Tag.SEQUENCE || validityEl.tag !== Tag.SEQUENCE || subjectEl.tag !== Tag.SEQUENCE || spkiEl.tag !== Tag.SEQUENCE) bad('bad TBSCertificate field');
  // Read strictly (the outer one is not signed), and the signed copy must be the same (RFC 5280 4.1.1.2).
  const { oid: signatureOid, scheme: signatureScheme } = readSignature(buf, sigAlg);
  if (buf.compare(buf, innerAlg.start, innerAlg.end, sigAlg.start, sigAlg.end) !== 0) bad('the signature algorithm inside and outside the TBSCertificate differ (RFC 5280 4.1.1.2)');
  // The key's structure, as OpenSSL would read it (its strength is the verifier's or the monitor's question).
  readSpki(elementBytes(buf, spkiEl));
  const [nb, na, more] = children(buf, validityEl, 3);
  if (!nb || !na || more) bad('bad validity');
  let serialBytes = Buffer.from(contentBytes(buf, serialEl));
  while (serialBytes.length > 1 && serialBytes[0] === 0) serialBytes = serialBytes.subarray(1);
  const issuer = nameToString(buf, issuerEl);
  const subject = nameToString(buf, subjectEl);
  const info: CertificateInfo = {
    der: buf,
    serial: serialBytes.toString('hex'),
    serialBytes,
    issuerName: Buffer.from(elementBytes(buf, issuerEl)),
    subjectName: Buffer.from(elementBytes(buf, subjectEl)),
    subject: subject.text,
    issuer: issuer.text,
    commonName: subject.commonName,
    notBefore: readTime(buf, nb),
    notAfter: readTime(buf, na),
    spki: Buffer.from(elementBytes(buf, spkiEl)),
    isCa: false,
    eku: [],
    names: { dns: [], ip: [], uri: [] },
    criticalExtensions: [],
    signatureOid,
    ...(signatureScheme ? { signatureScheme } : {}),
    fingerprint: crypto.hash('sha256', buf, 'hex'),
  };
  // After the key: issuerUniqueID [1], subjectUniqueID [2], extensions [3], each optional, in order (RFC 5280 4.1).
  let last = 0;
  for (const e of f.slice(i + 6)) {
    const n = e.tag === 0x81 || e.tag === 0x82 ? e.tag - 0x80 : e.tag === 0xa3 ? 3 : 0;
    if (n <= last) bad(`unexpected field (tag 0x${e.tag.toString(16)}) after subjectPublicKeyInfo`);
    // A UniqueIdentifier is an IMPLICIT BIT STRING: its first byte counts the unused bits.
    const v = contentBytes(buf, e);
    if (n < 3 && (v.length === 0 || v[0] > 7 || (v.length === 1 && v[0] !== 0))) bad('bad UniqueIdentifier');
    last = n;
  }
  const extsWrapper = f.slice(i + 6).find((e) => e.tag === 0xa3);
  if (extsWrapper) {
    const [exts, more] = children(buf, extsWrapper, 2);
    if (!exts || more || exts.tag !== Tag.SEQUENCE) bad('extensions must be one SEQUENCE');
    for (const e of children(buf, exts, MAX_CERT_ELEMENTS)) readExtension(buf, e, info);
  }
  return info;
}

/** A BOOLEAN as DER writes it: one byte, 00 or FF. */
const isBoolean = (buf: Buffer, e: DerElement): boolean => e.tag === Tag.BOOLEAN && e.end - e.contentStart === 1 && (buf[e.contentStart] === 0 || buf[e.contentStart] === 0xff);

function readExtension(buf: Buffer, e: DerElement, info: CertificateInfo): void {
  const bad = (detail: string): never => {
    throw new MutualError('CERT_MALFORMED', { detail });
  };
  // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } (RFC 5280 4.1)
  const parts = e.tag === Tag.SEQUENCE ? children(buf, e, 4) : [];
  const [idEl, critical] = parts;
  const value = parts[parts.length - 1];
  if (parts.length < 2 || parts.length > 3 || idEl.tag !== Tag.OID || value.tag !== Tag.OCTET_STRING || (parts.length === 3 && !isBoolean(buf, critical))) bad('bad extension');
  const id = readOid(buf, idEl);
  if (parts.length === 3 && buf[critical.contentStart] !== 0) info.criticalExtensions.push(id);
  const inner = readElement(buf, value.contentStart, value.end);
  if (inner.end !== value.end) bad(`extension ${id}: trailing bytes in its value`);
  const needs = (tag: number): void => {
    if (inner.tag !== tag) bad(`extension ${id}: bad value`);
  };
  switch (id) {
    case OID.subjectKeyIdentifier:
      needs(Tag.OCTET_STRING);
      info.subjectKeyId = Buffer.from(contentBytes(buf, inner));
      break;
    case OID.authorityKeyIdentifier:
      needs(Tag.SEQUENCE);
      for (const c of children(buf, inner, 3)) if (c.tag === 0x80) info.authorityKeyId = Buffer.from(contentBytes(buf, c));
      break;
    case OID.basicConstraints: {
      needs(Tag.SEQUENCE);
      const c = children(buf, inner, 2);
      info.isCa = c[0]?.tag === Tag.BOOLEAN && c[0].end - c[0].contentStart === 1 && buf[c[0].contentStart] !== 0;
      const pl = c.find((x) => x.tag === Tag.INTEGER);
      if (pl) {
        // pathLenConstraint INTEGER (0..MAX): a non-negative number that fits in 4 bytes here.
        const v = contentBytes(buf, pl);
        if (v.length === 0 || v.length > 4 || (v[0] & 0x80) !== 0) bad('bad pathLenConstraint');
        info.pathLen = Buffer.from(v).readUIntBE(0, v.length);
      }
      break;
    }
    case OID.extKeyUsage:
      needs(Tag.SEQUENCE);
      for (const k of children(buf, inner, MAX_CERT_ELEMENTS)) {
        if (k.tag !== Tag.OID) bad('extKeyUsage holds something other than OIDs');
        info.eku.push(readOid(buf, k));
      }
      break;
    case OID.subjectAltName:
      needs(Tag.SEQUENCE);
      for (const gn of children(buf, inner, MAX_CERT_ELEMENTS)) {
        info.sanEntries = (info.sanEntries ?? 0) + 1;
        const v = contentBytes(buf, gn);
        if (gn.tag === 0x82) info.names.dns.push(Buffer.from(v).toString('latin1'));
        else if (gn.tag === 0x86) info.names.uri.push(Buffer.from(v).toString('latin1'));
        else if (gn.tag === 0x87 && (v.length === 4 || v.length === 16)) info.names.ip.push(bytesToIp(v));
      }
      break;
    case OID.nameConstraints: {
      needs(Tag.SEQUENCE);
      const permitted = { dns: [] as string[], ip: [] as IpRange[], uri: [] as string[] };
      for (const part of children(buf, inner, 2)) {
        if (part.tag !== 0xa0) continue;
        for (const subtree of children(buf, part, MAX_CERT_ELEMENTS)) {
          if (subtree.tag !== Tag.SEQUENCE) bad('bad GeneralSubtree');
          const gn = readElement(buf, subtree.contentStart, subtree.end);
          const v = contentBytes(buf, gn);
          if (gn.tag === 0x82) permitted.dns.push(Buffer.from(v).toString('latin1'));
          else if (gn.tag === 0x86) permitted.uri.push(Buffer.from(v).toString('latin1'));
          else if (gn.tag === 0x87 && (v.length === 8 || v.length === 32)) {
            const half = v.length / 2;
            const mask = v.subarray(half);
            let prefix = 0;
            for (const byte of mask) prefix += [...byte.toString(2)].filter((b) => b === '1').length;
            const network = Buffer.from(v.subarray(0, half));
            permitted.ip.push({ network, prefix, text: `${bytesToIp(network)}/${prefix}` });
          }
        }
      }
      info.permitted = permitted;
      break;
    }
    case OID.acmeIdentifier:
      // Authorization ::= OCTET STRING (SIZE (32)) (RFC 8737 section 6.1); the size is the validator's check.
      needs(Tag.OCTET_STRING);
      if (info.acmeIdentifier) bad('two acmeIdentifier extensions (RFC 5280 4.2)');
      info.acmeIdentifier = Buffer.from(contentBytes(buf, inner));
      break;
  }
}

/**
 * The key id certificates name their issuer by (their AKI): the SKI, else SHA-1 of the whole
 * SPKI (as the CA computes it), lowercase hex.
 */
export function keyIdOf(info: CertificateInfo): string {
  return (info.subjectKeyId ?? crypto.createHash('sha1').update(info.spki).digest()).toString('hex');
}

/** The SPIFFE identity of a certificate (its one spiffe:// URI SAN), if any. */
export function certificateIdentity(info: CertificateInfo): string | undefined {
  return info.names.uri.find((u) => u.startsWith('spiffe://'));
}
