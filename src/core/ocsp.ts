/**
 * OCSP (RFC 6960): writing and reading requests, writing responses that are signed ahead of time. A
 * SingleResponse is encoded once per certificate and status, and a whole OCSPResponse once per
 * (issuer, serial); the server then answers from cached bytes, so an answer costs no signature
 * (DESIGN.md, "OCSP"). Only requests with a nonce (RFC 8954) are signed on demand, reusing the
 * cached SingleResponse. Requests are read with the strict, bounded reader of der.ts.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { keyIdentifier, readSignature, spkiDer } from './algorithms.ts';
import { verifySignature, type SignatureScheme } from './verify-signature.ts';
import { parseCertificate } from './certificate.ts';
import { REVOCATION_REASONS, type RevocationReason } from './crl.ts';
import {
  Tag, bitString, checkOid, children, contentBytes, elementBytes, enumerated, expect, explicit, octetString, oid, oidToString, readElement, readTime, seq, tlv,
  type DerElement,
} from './der.ts';
import { MutualError } from './errors.ts';
import { OID } from './oids.ts';
import { MAX_OBJECT_BYTES } from './pem.ts';
import type { Signer } from './signer.ts';

/** Largest OCSP request read (bytes). One CertID with a nonce is ~120 bytes; 16 fit in 2 KiB. */
export const MAX_OCSP_REQUEST_BYTES = 8 * 1024;
/** Most CertIDs in one request. RFC 6960 4.1.1 sets no bound; OpenSSL and browsers send one. */
export const MAX_OCSP_REQUESTS = 16;
/** Nonce length bounds: RFC 8954 2.1 has responders reject 0 and more than 32 octets. */
export const MIN_OCSP_NONCE_BYTES = 1;
export const MAX_OCSP_NONCE_BYTES = 32;
/** Most extensions read in one Extensions field. */
export const MAX_OCSP_EXTENSIONS = 16;
/** Most SingleResponses and certificates {@link parseOcspResponse} reads from one response. */
export const MAX_OCSP_SINGLE_RESPONSES = 64;
export const MAX_OCSP_RESPONSE_CERTS = 8;
/** Longest serial number (RFC 5280 4.1.2.2: at most 20 octets). */
export const MAX_SERIAL_BYTES = 20;

/** OIDs used only by OCSP: RFC 6960 4.2.1 and 4.4.1, and the CertID hashes (RFC 3279, RFC 5754). */
export const OCSP_OID = {
  basic: '1.3.6.1.5.5.7.48.1.1',
  nonce: '1.3.6.1.5.5.7.48.1.2',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
} as const;

/** Hashes a CertID may use. SHA-1 is what OpenSSL and browsers send by default (RFC 5019 2.1.1). */
export type CertIdHash = 'sha1' | 'sha256';
// OIDs are compared by their content bytes: decoding them (BigInt arcs) was ~15% of parsing a request.
const oidKey = (dotted: string): string => oid(dotted).subarray(2).toString('latin1');
const keyOf = (buf: Buffer, e: DerElement): string => buf.toString('latin1', e.contentStart, e.end);
const HASH_BY_OID = new Map<string, CertIdHash>([[oidKey(OCSP_OID.sha1), 'sha1'], [oidKey(OCSP_OID.sha256), 'sha256']]);
const NONCE_KEY = oidKey(OCSP_OID.nonce);
const HASH_BYTES: Record<CertIdHash, number> = { sha1: 20, sha256: 32 };

/** A CertID (RFC 6960 4.1.1). */
export interface CertId {
  hashAlgorithm: CertIdHash;
  /** Hash of the issuer's subject Name DER. */
  issuerNameHash: Buffer;
  /** Hash of the issuer's subjectPublicKey BIT STRING value (without the unused-bits byte). */
  issuerKeyHash: Buffer;
  /** Serial as lowercase hex, without leading zero bytes (as in CertificateInfo). */
  serial: string;
  /** The CertID's DER as received: the response echoes it byte for byte. */
  raw: Buffer;
}

/** What a request asks. */
export interface OcspRequest {
  requests: CertId[];
  /** The requestExtensions nonce (RFC 8954), 1 to 32 bytes. */
  nonce?: Buffer;
}

const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

// Until errors.ts has OCSP_MALFORMED_REQUEST and OCSP_BAD_NONCE, both are DER_MALFORMED with a
// `part` field; any MutualError out of parseOcspRequest is answered with OCSP_MALFORMED.
const malformed = (detail: string, part = 'request'): never => {
  throw new MutualError('DER_MALFORMED', { detail: `OCSP ${part}: ${detail}`, part });
};

function readCertId(buf: Buffer, e: DerElement): CertId {
  const [alg, nameHash, keyHash, serial, extra] = e.tag === Tag.SEQUENCE ? children(buf, e, 5) : [];
  if (!serial || extra || alg.tag !== Tag.SEQUENCE || nameHash.tag !== Tag.OCTET_STRING || keyHash.tag !== Tag.OCTET_STRING || serial.tag !== Tag.INTEGER) {
    malformed('CertID must be hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber');
  }
  const [algOid, params, more] = children(buf, alg, 3);
  // Parameters are NULL (as OpenSSL writes them) or absent (RFC 5754 3).
  if (!algOid || algOid.tag !== Tag.OID || more || (params && (params.tag !== Tag.NULL || params.end !== params.contentStart))) malformed('bad hashAlgorithm');
  const hashAlgorithm = HASH_BY_OID.get(keyOf(buf, algOid));
  if (!hashAlgorithm) return malformed(`CertID hash ${oidToString(contentBytes(buf, algOid))} is not supported; use SHA-1 or SHA-256`);
  const issuerNameHash = Buffer.from(contentBytes(buf, nameHash));
  const issuerKeyHash = Buffer.from(contentBytes(buf, keyHash));
  if (issuerNameHash.length !== HASH_BYTES[hashAlgorithm] || issuerKeyHash.length !== HASH_BYTES[hashAlgorithm]) malformed(`issuer hashes are not ${hashAlgorithm} digests`);
  let s = contentBytes(buf, serial);
  if (s.length === 0 || (s.length > 1 && s[0] === 0 && (s[1] & 0x80) === 0)) malformed('serialNumber is not a minimal DER INTEGER');
  if (s.length > 1 && s[0] === 0) s = s.subarray(1);
  if (s.length > MAX_SERIAL_BYTES) malformed(`serialNumber longer than ${MAX_SERIAL_BYTES} octets`);
  return { hashAlgorithm, issuerNameHash, issuerKeyHash, serial: Buffer.from(s).toString('hex'), raw: Buffer.from(elementBytes(buf, e)) };
}

/**
 * Reads an `[n] EXPLICIT Extensions` field; returns each extnValue OCTET STRING keyed by the OID's
 * content bytes ({@link oidKey}). Duplicates are refused, and with `understood` given, so is a
 * critical extension not in it (RFC 6960 4.4, RFC 5280 4.2).
 */
function readExtensions(buf: Buffer, wrapper: DerElement, understood?: readonly string[]): Map<string, DerElement> {
  const [list, extra] = children(buf, wrapper, 2);
  if (!list || extra || list.tag !== Tag.SEQUENCE) malformed('Extensions must be one SEQUENCE');
  const out = new Map<string, DerElement>();
  for (const ext of children(buf, list, MAX_OCSP_EXTENSIONS)) {
    const [id, a, b, c] = ext.tag === Tag.SEQUENCE ? children(buf, ext, 4) : [];
    const value = b ?? a;
    const critical = b !== undefined && a.tag === Tag.BOOLEAN && a.end - a.contentStart === 1 && buf[a.contentStart] === 0xff;
    if (!id || id.tag !== Tag.OID || !value || value.tag !== Tag.OCTET_STRING || c || (b && !critical)) malformed('bad Extension (DER omits critical FALSE)');
    // Extensions are keyed by their OID's bytes: a malformed OID must not pass as "another extension".
    checkOid(buf, id);
    const key = keyOf(buf, id);
    if (out.has(key)) malformed(`extension ${oidToString(contentBytes(buf, id))} appears twice`);
    if (critical && understood && !understood.includes(key)) malformed(`unsupported critical extension ${oidToString(contentBytes(buf, id))}`);
    out.set(key, value);
  }
  return out;
}

/** The nonce inside an extnValue: an OCTET STRING of 1 to 32 bytes (RFC 8954 2.1). */
function readNonce(buf: Buffer, value: DerElement): Buffer {
  const inner = readElement(buf, value.contentStart, value.end);
  if (inner.tag !== Tag.OCTET_STRING || inner.end !== value.end) malformed('the nonce must be an OCTET STRING (RFC 8954 2.1)', 'nonce');
  const n = contentBytes(buf, inner);
  if (n.length < MIN_OCSP_NONCE_BYTES || n.length > MAX_OCSP_NONCE_BYTES) {
    malformed(`nonce of ${n.length} bytes; RFC 8954 2.1 allows ${MIN_OCSP_NONCE_BYTES} to ${MAX_OCSP_NONCE_BYTES}`, 'nonce');
  }
  return Buffer.from(n);
}

/** An `[0] EXPLICIT Version DEFAULT v1`: DER omits it, but v1 written out is tolerated. */
function checkVersion(buf: Buffer, e: DerElement): void {
  const v = contentBytes(buf, e);
  if (v.length !== 3 || v[0] !== Tag.INTEGER || v[1] !== 1 || v[2] !== 0) malformed('only version 1 exists (RFC 6960 4.1.1)');
}

/**
 * Parses a DER OCSPRequest (RFC 6960 4.1.1). Bounded: at most {@link MAX_OCSP_REQUEST_BYTES}
 * (else INPUT_TOO_LARGE) and {@link MAX_OCSP_REQUESTS} CertIDs (else DER_TOO_COMPLEX); anything
 * else that is not a well-formed request, including a nonce outside 1..32 bytes (RFC 8954 2.1), an
 * unsupported CertID hash or an unknown critical extension, is DER_MALFORMED. The requestorName and
 * an optionalSignature are accepted and ignored: mutual answers anyone (RFC 6960 4.1.2 leaves
 * signed requests to the responder). Every such error is answered with {@link OCSP_MALFORMED}.
 */
export function parseOcspRequest(der: Uint8Array): OcspRequest {
  if (der.length > MAX_OCSP_REQUEST_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `OCSP request of ${der.length} bytes; the limit is ${MAX_OCSP_REQUEST_BYTES}` });
  const buf = asBuffer(der);
  const outer = expect(buf, 0, Tag.SEQUENCE, buf.length, 'OCSPRequest');
  if (outer.end !== buf.length) malformed('trailing bytes after the OCSPRequest');
  const [tbs, signature, extra] = children(buf, outer, 3);
  if (!tbs || tbs.tag !== Tag.SEQUENCE || extra || (signature && signature.tag !== 0xa0)) malformed('OCSPRequest must be tbsRequest [, [0] optionalSignature]');
  const f = children(buf, tbs, 4);
  let i = 0;
  if (f[i]?.tag === 0xa0) checkVersion(buf, f[i++]);
  if (f[i]?.tag === 0xa1) i++; // requestorName
  const list = f[i++];
  const exts = f[i++];
  if (!list || list.tag !== Tag.SEQUENCE || (exts && exts.tag !== 0xa2) || f[i]) malformed('TBSRequest must be [version,] [requestorName,] requestList [, requestExtensions]');
  const requests = children(buf, list, MAX_OCSP_REQUESTS).map((r) => {
    const [certId, singleExts, more] = r.tag === Tag.SEQUENCE ? children(buf, r, 3) : [];
    if (!certId || more || (singleExts && singleExts.tag !== 0xa0)) malformed('Request must be reqCert [, [0] singleRequestExtensions]');
    if (singleExts) readExtensions(buf, singleExts, []);
    return readCertId(buf, certId);
  });
  if (requests.length === 0) malformed('empty requestList');
  const nonceValue = exts && readExtensions(buf, exts, [NONCE_KEY]).get(NONCE_KEY);
  return nonceValue ? { requests, nonce: readNonce(buf, nonceValue) } : { requests };
}

/** The CertID hashes of one issuer, per hash algorithm. */
export type OcspIssuerHashes = Record<CertIdHash, { nameHash: Buffer; keyHash: Buffer }>;

/**
 * The hashes a CertID names an issuer by (RFC 6960 4.1.1): of the issuer certificate's subject Name
 * DER, and of its subjectPublicKey BIT STRING value without the unused-bits byte; SHA-1 and SHA-256.
 */
export function ocspIssuerHashes(issuerCertDer: Uint8Array): OcspIssuerHashes {
  const info = parseCertificate(issuerCertDer);
  const spki = expect(info.spki, 0, Tag.SEQUENCE, info.spki.length, 'SubjectPublicKeyInfo');
  const bits = children(info.spki, spki, 2)[1];
  if (!bits || bits.tag !== Tag.BIT_STRING) throw new MutualError('CERT_MALFORMED', { detail: 'SubjectPublicKeyInfo without a BIT STRING' });
  const key = contentBytes(info.spki, bits).subarray(1);
  const h = (alg: CertIdHash) => ({ nameHash: crypto.hash(alg, info.subjectName, 'buffer'), keyHash: crypto.hash(alg, key, 'buffer') });
  return { sha1: h('sha1'), sha256: h('sha256') };
}

/** True when a CertID names the issuer with these hashes. */
export function matchesIssuer(id: CertId, hashes: OcspIssuerHashes): boolean {
  const h = hashes[id.hashAlgorithm];
  return h.nameHash.equals(id.issuerNameHash) && h.keyHash.equals(id.issuerKeyHash);
}

/**
 * Encodes a CertID as OpenSSL writes it (hash parameters NULL), for answers signed before any
 * request arrives. `serial` is lowercase hex. A response must echo the CertID a client sent, so a
 * cache of such answers is keyed by {@link CertId.raw}.
 */
export function encodeCertId(hashAlgorithm: CertIdHash, hashes: OcspIssuerHashes, serial: string): Buffer {
  if (!/^[0-9a-f]{1,40}$/.test(serial)) throw new TypeError(`serial must be lowercase hex of at most ${MAX_SERIAL_BYTES} bytes`);
  const h = hashes[hashAlgorithm];
  const magnitude = Buffer.from(serial.length % 2 ? '0' + serial : serial, 'hex');
  const serialDer = magnitude[0] & 0x80 ? tlv(Tag.INTEGER, Buffer.from([0]), magnitude) : tlv(Tag.INTEGER, magnitude);
  return seq(seq(oid(OCSP_OID[hashAlgorithm]), Buffer.from([Tag.NULL, 0])), octetString(h.nameHash), octetString(h.keyHash), serialDer);
}

/**
 * Encodes an unsigned OCSPRequest (RFC 6960 4.1.1) asking for each CertID (from
 * {@link encodeCertId}), with no nonce: the verifier caches answers until their nextUpdate, so
 * a pre-signed answer is what it wants (RFC 5019 2.1.1). At most {@link MAX_OCSP_REQUESTS}, as a
 * responder reading it with {@link parseOcspRequest} accepts.
 */
export function buildOcspRequest(certIds: readonly Buffer[]): Buffer {
  if (certIds.length < 1 || certIds.length > MAX_OCSP_REQUESTS) throw new TypeError(`an OCSP request asks for 1 to ${MAX_OCSP_REQUESTS} certificates`);
  // OCSPRequest { tbsRequest TBSRequest { requestList SEQUENCE OF Request { reqCert CertID } } }
  return seq(seq(seq(...certIds.map((id) => seq(id)))));
}

/** GeneralizedTime, which every OCSP time is (RFC 6960 4.2.1), in Z and to the second (RFC 5280 4.1.2.5.2). */
function generalizedTime(d: Date): Buffer {
  const t = d.getTime();
  if (!Number.isFinite(t) || t % 1000 !== 0) throw new TypeError('OCSP times must be whole seconds (floorSeconds)');
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(d.toISOString().replace(/[-:T]|\.000/g, ''), 'latin1'));
}

/** The status of one certificate, as the responder states it. */
export type OcspCertStatus =
  | { status: 'good' }
  | { status: 'revoked'; revokedAt: Date; reason?: RevocationReason | number }
  | { status: 'unknown' };

/** What {@link createOcspResponder} needs. */
export interface OcspResponderOptions {
  /** The CA whose certificates the answers are about. */
  issuerCertDer: Buffer;
  /** The delegated responder's certificate (EKU OCSPSigning, issued by that CA), or the CA itself. */
  responderCertDer: Buffer;
  /** The responder's key. */
  signer: Signer;
}

/** A responder for one issuer. */
export interface OcspResponder {
  /** The issuer's CertID hashes, to pick the responder for a CertID with {@link matchesIssuer}. */
  readonly issuerHashes: OcspIssuerHashes;
  /** When the responder certificate expires: rotate it, and re-sign, well before. */
  readonly responderNotAfter: Date;
  /**
   * Encodes one SingleResponse (RFC 6960 4.2.1) for a CertID DER (from {@link CertId.raw} or
   * {@link encodeCertId}). A reason of unspecified (0) is left out, as in the CRL (RFC 5280 5.3.1).
   * Times are whole seconds.
   */
  encodeSingle(s: OcspCertStatus & { certId: Buffer }, thisUpdate: Date, nextUpdate: Date): Buffer;
  /**
   * Signs a successful OCSPResponse over encoded SingleResponses: BasicOCSPResponse, responderID
   * byKey, the nonce echoed in responseExtensions when given (RFC 8954), and the responder
   * certificate in `certs` (RFC 6960 4.2.1, 4.2.2.2).
   */
  sign(singles: readonly Buffer[], producedAt: Date, nonce?: Buffer): Promise<Buffer>;
}

const GOOD = Buffer.from([0x80, 0]);
const UNKNOWN = Buffer.from([0x82, 0]);
const BASIC_OID = oid(OCSP_OID.basic);
const NONCE_OID = oid(OCSP_OID.nonce);
const SUCCESSFUL = enumerated(0);
const VALID_REASONS = new Set<number>(Object.values(REVOCATION_REASONS));

function isOneSequence(der: Buffer): boolean {
  try {
    return der[0] === Tag.SEQUENCE && readElement(der, 0).end === der.length;
  } catch {
    return false;
  }
}

/**
 * Makes a responder that signs with a delegated responder certificate (RFC 6960 4.2.2.2). Throws
 * TypeError when the signer's key is not the responder certificate's, or when that certificate is
 * neither the issuer itself nor issued by it with EKU OCSPSigning.
 */
export function createOcspResponder(o: OcspResponderOptions): OcspResponder {
  const issuer = parseCertificate(o.issuerCertDer);
  const responder = parseCertificate(o.responderCertDer);
  if (!spkiDer(o.signer.publicKey).equals(responder.spki)) throw new TypeError('the signer key does not belong to the responder certificate');
  const isIssuer = responder.spki.equals(issuer.spki) && responder.subjectName.equals(issuer.subjectName);
  if (!isIssuer && (!responder.issuerName.equals(issuer.subjectName) || !responder.eku.includes(OID.ocspSigning))) {
    throw new TypeError('the responder certificate must be issued by the issuer with EKU OCSPSigning (RFC 6960 4.2.2.2)');
  }
  // responderID byKey: [2] EXPLICIT KeyHash, the SHA-1 of the responder's subjectPublicKey value.
  const responderId = explicit(2, octetString(keyIdentifier(responder.spki)));
  const certs = explicit(0, seq(o.responderCertDer));
  return {
    issuerHashes: ocspIssuerHashes(o.issuerCertDer),
    responderNotAfter: responder.notAfter,
    encodeSingle(s, thisUpdate, nextUpdate) {
      if (!isOneSequence(s.certId)) throw new TypeError('certId must be the DER of one CertID');
      if (nextUpdate < thisUpdate) throw new TypeError('nextUpdate is before thisUpdate');
      let status: Buffer;
      if (s.status === 'good') status = GOOD;
      else if (s.status === 'unknown') status = UNKNOWN;
      else {
        const code = typeof s.reason === 'string' ? (Object.hasOwn(REVOCATION_REASONS, s.reason) ? REVOCATION_REASONS[s.reason] : -1) : s.reason;
        if (code !== undefined && !VALID_REASONS.has(code)) throw new TypeError(`${String(s.reason)} is not a CRLReason (RFC 5280 5.3.1)`);
        // revoked [1] IMPLICIT RevokedInfo { revocationTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL }
        status = code ? explicit(1, generalizedTime(s.revokedAt), explicit(0, enumerated(code))) : explicit(1, generalizedTime(s.revokedAt));
      }
      return seq(s.certId, status, generalizedTime(thisUpdate), explicit(0, generalizedTime(nextUpdate)));
    },
    async sign(singles, producedAt, nonce) {
      if (singles.length === 0) throw new TypeError('an OCSP response needs at least one SingleResponse');
      if (nonce && (nonce.length < MIN_OCSP_NONCE_BYTES || nonce.length > MAX_OCSP_NONCE_BYTES)) throw new TypeError('nonce must be 1 to 32 bytes (RFC 8954 2.1)');
      const extensions = nonce ? [explicit(1, seq(seq(NONCE_OID, octetString(octetString(nonce)))))] : [];
      // version is v1, the DEFAULT, so DER leaves it out.
      const tbs = seq(responderId, generalizedTime(producedAt), seq(...singles), ...extensions);
      const signature = await o.signer.sign(tbs);
      const basic = seq(tbs, o.signer.algorithm.der, bitString(signature), certs);
      return seq(SUCCESSFUL, explicit(0, seq(BASIC_OID, octetString(basic))));
    },
  };
}

/** OCSPResponseStatus values (RFC 6960 4.2.1); 4 is unused. */
export const OCSP_RESPONSE_STATUSES = { successful: 0, malformedRequest: 1, internalError: 2, tryLater: 3, sigRequired: 5, unauthorized: 6 } as const;
export type OcspResponseStatus = keyof typeof OCSP_RESPONSE_STATUSES;

// The unsigned error responses: an OCSPResponse with only a responseStatus (RFC 6960 4.2.1, 2.3).
// Shared Buffers: send them, never write into them.
/** `malformedRequest` (1): the request could not be parsed. */
export const OCSP_MALFORMED: Buffer = seq(enumerated(OCSP_RESPONSE_STATUSES.malformedRequest));
/** `internalError` (2). */
export const OCSP_INTERNAL_ERROR: Buffer = seq(enumerated(OCSP_RESPONSE_STATUSES.internalError));
/** `tryLater` (3): e.g. no pre-signed answer yet and signing is saturated. */
export const OCSP_TRY_LATER: Buffer = seq(enumerated(OCSP_RESPONSE_STATUSES.tryLater));
/** `unauthorized` (6): the CertID names an issuer this responder does not serve (RFC 6960 2.3). */
export const OCSP_UNAUTHORIZED: Buffer = seq(enumerated(OCSP_RESPONSE_STATUSES.unauthorized));

/** One SingleResponse as read. */
export interface OcspSingleResponse {
  certId: CertId;
  status: 'good' | 'revoked' | 'unknown';
  revokedAt?: Date;
  /** CRLReason code, when given. */
  reason?: number;
  thisUpdate: Date;
  nextUpdate?: Date;
}

/** A parsed OCSPResponse; only successful ones carry a BasicOCSPResponse. */
export type OcspResponse =
  | {
    status: 'successful';
    /** The signed bytes (ResponseData DER). */
    tbs: Buffer;
    signatureOid: string;
    /** How its signature is verified; undefined when mutual does not accept the algorithm (see readSignature). */
    signatureScheme?: SignatureScheme;
    signature: Buffer;
    /** responderID: byKey hash, or byName DER. */
    responderKeyHash?: Buffer;
    responderName?: Buffer;
    producedAt: Date;
    responses: OcspSingleResponse[];
    nonce?: Buffer;
    /** DER certificates from `certs`. */
    certs: Buffer[];
  }
  | { status: Exclude<OcspResponseStatus, 'successful'> };

const STATUS_NAMES = new Map<number, OcspResponseStatus>(Object.entries(OCSP_RESPONSE_STATUSES).map(([k, v]) => [v, k as OcspResponseStatus]));

/**
 * Reads a DER OCSPResponse (RFC 6960 4.2.1) for tests, the monitor and the SDK: status, and for
 * successful basic responses the fields above. It checks no signature (see
 * {@link verifyOcspResponse}). Throws INPUT_TOO_LARGE over 64 KiB, DER_TOO_COMPLEX, DER_MALFORMED.
 */
export function parseOcspResponse(der: Uint8Array): OcspResponse {
  if (der.length > MAX_OBJECT_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `OCSP response of ${der.length} bytes` });
  const buf = asBuffer(der);
  const bad = (detail: string): never => malformed(detail, 'response');
  const outer = expect(buf, 0, Tag.SEQUENCE, buf.length, 'OCSPResponse');
  if (outer.end !== buf.length) bad('trailing bytes after the OCSPResponse');
  const [statusEl, bytes, extra] = children(buf, outer, 3);
  if (!statusEl || statusEl.tag !== Tag.ENUMERATED || statusEl.end - statusEl.contentStart !== 1 || extra) bad('bad responseStatus');
  const status = STATUS_NAMES.get(buf[statusEl.contentStart]) ?? bad(`unknown responseStatus ${buf[statusEl.contentStart]}`);
  if (status !== 'successful') return bytes ? bad('an error response has no responseBytes') : { status };
  const [rb] = bytes?.tag === 0xa0 ? children(buf, bytes, 1) : [];
  const [type, octets, more] = rb?.tag === Tag.SEQUENCE ? children(buf, rb, 3) : [];
  if (!octets || more || type.tag !== Tag.OID || octets.tag !== Tag.OCTET_STRING) bad('bad responseBytes');
  if (oidToString(contentBytes(buf, type)) !== OCSP_OID.basic) bad('not a BasicOCSPResponse');
  const basic = expect(buf, octets.contentStart, Tag.SEQUENCE, octets.end, 'BasicOCSPResponse');
  if (basic.end !== octets.end) bad('trailing bytes after the BasicOCSPResponse');
  const [tbs, sigAlg, sig, certsEl, more2] = children(buf, basic, 5);
  if (!sig || more2 || tbs.tag !== Tag.SEQUENCE || sigAlg.tag !== Tag.SEQUENCE || sig.tag !== Tag.BIT_STRING || (certsEl && certsEl.tag !== 0xa0)) bad('bad BasicOCSPResponse');
  // Strictly (RFC 4055 5, RFC 5758 3.2): the AlgorithmIdentifier is outside the signed ResponseData.
  const { oid: signatureOid, scheme: signatureScheme } = readSignature(buf, sigAlg);
  const sigBits = contentBytes(buf, sig);
  if (sigBits.length < 2 || sigBits[0] !== 0) bad('bad signature');
  const f = children(buf, tbs, 5);
  let i = 0;
  if (f[i]?.tag === 0xa0) checkVersion(buf, f[i++]);
  const rid = f[i++];
  const [producedAt, list, exts, more3] = f.slice(i);
  if (!list || more3 || (rid.tag !== 0xa1 && rid.tag !== 0xa2) || producedAt.tag !== Tag.GENERALIZED_TIME || list.tag !== Tag.SEQUENCE || (exts && exts.tag !== 0xa1)) bad('bad ResponseData');
  const ridValue = readElement(buf, rid.contentStart, rid.end);
  const responses = children(buf, list, MAX_OCSP_SINGLE_RESPONSES).map((r): OcspSingleResponse => {
    const [certId, st, thisUpdate, ...rest] = r.tag === Tag.SEQUENCE ? children(buf, r, 5) : [];
    if (!thisUpdate || thisUpdate.tag !== Tag.GENERALIZED_TIME) bad('bad SingleResponse');
    const next = rest.find((e) => e.tag === 0xa0);
    const single: OcspSingleResponse = { certId: readCertId(buf, certId), status: 'good', thisUpdate: readTime(buf, thisUpdate) };
    if (next) single.nextUpdate = readTime(buf, readElement(buf, next.contentStart, next.end));
    if (st.tag === 0xa1) {
      const [at, reason] = children(buf, st, 2);
      if (!at || at.tag !== Tag.GENERALIZED_TIME || (reason && reason.tag !== 0xa0)) bad('bad RevokedInfo');
      single.status = 'revoked';
      single.revokedAt = readTime(buf, at);
      const code = reason && contentBytes(buf, expect(buf, reason.contentStart, Tag.ENUMERATED, reason.end, 'CRLReason'));
      if (code && code.length !== 1) bad('bad CRLReason');
      if (code) single.reason = code[0];
    } else if (st.tag === 0x82 && st.end === st.contentStart) single.status = 'unknown';
    else if (st.tag !== 0x80 || st.end !== st.contentStart) bad('bad CertStatus');
    return single;
  });
  const nonceValue = exts && readExtensions(buf, exts).get(NONCE_KEY);
  const certs = certsEl ? children(buf, expect(buf, certsEl.contentStart, Tag.SEQUENCE, certsEl.end, 'certs'), MAX_OCSP_RESPONSE_CERTS) : [];
  return {
    status,
    tbs: Buffer.from(elementBytes(buf, tbs)),
    signatureOid,
    ...(signatureScheme ? { signatureScheme } : {}),
    signature: Buffer.from(sigBits.subarray(1)),
    ...(rid.tag === 0xa2 ? { responderKeyHash: Buffer.from(contentBytes(buf, ridValue)) } : { responderName: Buffer.from(elementBytes(buf, ridValue)) }),
    producedAt: readTime(buf, producedAt),
    responses,
    ...(nonceValue ? { nonce: readNonce(buf, nonceValue) } : {}),
    certs: certs.map((c) => Buffer.from(elementBytes(buf, c))),
  };
}

/**
 * True when a successful response is signed by `responderPublicKey` with an accepted algorithm (no
 * SHA-1; RSASSA-PSS as its parameters name) and, if it names its responder by key, names that key (RFC 6960 4.2.1 ResponderID). It does
 * not check that the key may answer for the issuer (RFC 6960 4.2.2.2): the caller knows the chain.
 */
export function verifyOcspResponse(resp: OcspResponse, responderPublicKey: KeyObject): boolean {
  if (resp.status !== 'successful') return false;
  if (!resp.signatureScheme) return false;
  if (resp.responderKeyHash && !resp.responderKeyHash.equals(keyIdentifier(spkiDer(responderPublicKey)))) return false;
  return verifySignature(resp.signatureScheme, resp.tbs, responderPublicKey, resp.signature);
}
