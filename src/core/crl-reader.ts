/**
 * Reading certificate revocation lists (RFC 5280 section 5) for verifiers. A relying party loads a
 * CRL once and then answers "is this serial revoked?" per handshake, so the read turns the list
 * into a `Map` of serials (DESIGN.md, "Verification in the gateway") and keeps the revocation
 * time and reason of each entry in typed arrays beside it: no object per entry beyond the serial
 * string. The header of every element is read inline (no {@link readElement} object per element),
 * with DER's rules (definite, minimal lengths) and hard bounds on size and entry count. The
 * signature is checked separately, with the issuer's key, by {@link verifyCrlSignature}.
 */
import type { KeyObject } from 'node:crypto';
import { readSignature } from './algorithms.ts';
import { verifySignature, type SignatureScheme } from './verify-signature.ts';
import { nameToString } from './certificate.ts';
import { Tag, checkOid, children, contentBytes, elementBytes, expect, oid, oidToString, readElement, readTime, type DerElement } from './der.ts';
import { MutualError, isMutualError } from './errors.ts';
import { OID } from './oids.ts';
import { reasonName, type RevocationReason } from './crl.ts';

/** Largest CRL read (bytes): a 1,000,000-entry CRL of mutual's is ~35 MB (BASELINES.md). */
export const MAX_CRL_BYTES = 64 * 1024 * 1024;
/** Most revoked entries read from one CRL; the bound keeps a hostile CRL from exhausting memory. */
export const MAX_CRL_ENTRIES = 2_000_000;
/** Most CRL or entry extensions read (RFC 5280 5.2, 5.3 define 9; room for private ones). */
export const MAX_CRL_EXTENSIONS = 32;
/** Longest serial number (RFC 5280 4.1.2.2: at most 20 octets; 21 with a DER sign byte). */
export const MAX_CRL_SERIAL_BYTES = 21;

/** A CRL as read. Times are whole seconds; `revokedAt[i]` and `reasons[i]` belong to index i. */
export interface CrlInfo {
  der: Buffer;
  /** The signed bytes (TBSCertList DER). */
  tbs: Buffer;
  signatureOid: string;
  /** How its signature is verified; undefined when mutual does not accept the algorithm (see readSignature). */
  signatureScheme?: SignatureScheme;
  signature: Buffer;
  /** DER of the issuer Name, and as text. */
  issuerName: Buffer;
  issuer: string;
  /** The authorityKeyIdentifier keyIdentifier (RFC 5280 5.2.1), when present. */
  authorityKeyId?: Buffer;
  /** CRL number (RFC 5280 5.2.3), when present. */
  crlNumber?: bigint;
  thisUpdate: Date;
  nextUpdate?: Date;
  /** The revoked serials, looked up by hex (as CertificateInfo.serial) or bytes. */
  revoked: SerialSet;
  /** Revocation time of entry i, milliseconds since the epoch. */
  revokedAt: Float64Array;
  /** CRLReason code of entry i (RFC 5280 5.3.1), -1 when the entry has none. */
  reasons: Int8Array;
}

/** What {@link parseCrl} accepts. */
export interface ParseCrlOptions {
  /** Default {@link MAX_CRL_BYTES}. */
  maxBytes?: number;
  /** Default {@link MAX_CRL_ENTRIES}. */
  maxEntries?: number;
}

const oidBytes = (dotted: string): string => oid(dotted).subarray(2).toString('latin1');
const REASON = oidBytes(OID.crlReason);
const INVALIDITY_DATE = oidBytes('2.5.29.24');
const AKI = oidBytes(OID.authorityKeyIdentifier);
const CRL_NUMBER = oidBytes(OID.crlNumber);

const bad = (detail: string): never => {
  throw new MutualError('CRL_MALFORMED', { detail });
};

// Scratch results of readHeader: one element's tag, content start and end, without an object.
let hTag = 0;
let hStart = 0;
let hEnd = 0;

/** Reads the header at `o` into hTag/hStart/hEnd; the same rules as der.ts's readElement. */
function readHeader(buf: Buffer, o: number, limit: number): void {
  if (o + 2 > limit) bad(`truncated header at byte ${o}`);
  hTag = buf[o];
  let len = buf[o + 1];
  let p = o + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) bad(`bad length at byte ${o}`);
    if (p + n > limit || buf[p] === 0) bad(`bad length at byte ${o}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
    if (len < 0x80) bad(`non-minimal length at byte ${o}`);
  }
  if (p + len > limit) bad(`element runs past its container at byte ${o}`);
  hStart = p;
  hEnd = p + len;
}

const d2 = (buf: Buffer, p: number): number => {
  const a = buf[p] - 48;
  const b = buf[p + 1] - 48;
  if (a < 0 || a > 9 || b < 0 || b > 9) bad(`bad time digit at byte ${p}`);
  return a * 10 + b;
};

/** A UTCTime or GeneralizedTime (Z form, whole seconds) at hStart..hEnd, in ms since the epoch. */
function readTimeMs(buf: Buffer, tag: number, start: number, end: number): number {
  let p = start;
  let year: number;
  if (tag === Tag.UTC_TIME && end - start === 13) {
    const yy = d2(buf, p);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    p += 2;
  } else if (tag === Tag.GENERALIZED_TIME && end - start === 15) {
    year = d2(buf, p) * 100 + d2(buf, p + 2);
    p += 4;
  } else {
    return bad(`bad time at byte ${start}`);
  }
  if (buf[end - 1] !== 0x5a) bad(`time not in Z form at byte ${start}`);
  const month = d2(buf, p);
  const day = d2(buf, p + 2);
  const h = d2(buf, p + 4);
  const m = d2(buf, p + 6);
  const sec = d2(buf, p + 8);
  if (month < 1 || month > 12 || day < 1 || day > 31 || h > 23 || m > 59 || sec > 59) bad(`bad time at byte ${start}`);
  // Entries of one CRL share few distinct days: Date.UTC once per day, not once per entry.
  const dayKey = year * 10000 + month * 100 + day;
  if (dayKey !== lastDayKey) {
    // 31 April would roll over into May: the day must exist in its month.
    if (day > new Date(Date.UTC(year, month, 0)).getUTCDate()) bad(`bad time at byte ${start}`);
    lastDayKey = dayKey;
    lastDayMs = Date.UTC(year, month - 1, day);
  }
  return lastDayMs + ((h * 60 + m) * 60 + sec) * 1000;
}
let lastDayKey = -1;
let lastDayMs = 0;

/**
 * Parses a DER CRL (v1 or v2). Refuses, as RFC 5280 5.2 and 5.3 require, a CRL with a critical
 * extension or critical entry extension mutual does not process (delta CRLs, issuing
 * distribution points, indirect CRLs). Throws INPUT_TOO_LARGE, CRL_TOO_LARGE (more entries than
 * `maxEntries`) or CRL_MALFORMED. Reads 100,000 entries in ~25 ms here (bench/gateway-crl.ts).
 */
export function parseCrl(der: Uint8Array, o: ParseCrlOptions = {}): CrlInfo {
  const maxBytes = o.maxBytes ?? MAX_CRL_BYTES;
  const maxEntries = o.maxEntries ?? MAX_CRL_ENTRIES;
  if (der.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `CRL of ${der.length} bytes; the limit is ${maxBytes}` });
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  try {
    return parseUnchecked(buf, maxEntries);
  } catch (e) {
    if (isMutualError(e, 'DER_MALFORMED') || isMutualError(e, 'DER_TOO_COMPLEX')) throw new MutualError('CRL_MALFORMED', { detail: e.fields.detail }, { cause: e });
    throw e;
  }
}

function parseUnchecked(buf: Buffer, maxEntries: number): CrlInfo {
  const outer = expect(buf, 0, Tag.SEQUENCE, buf.length, 'CertificateList');
  if (outer.end !== buf.length) bad('trailing bytes after the CRL');
  const [tbs, sigAlg, sig, extra] = children(buf, outer, 4);
  if (!sig || extra || tbs.tag !== Tag.SEQUENCE || sigAlg.tag !== Tag.SEQUENCE || sig.tag !== Tag.BIT_STRING) bad('CertificateList must be tbsCertList, signatureAlgorithm, signatureValue');
  const sigBits = contentBytes(buf, sig);
  if (sigBits.length < 2 || sigBits[0] !== 0) bad('bad signatureValue');
  // Strictly (RFC 4055 5, RFC 5758 3.2); the inner copy is compared with it below.
  const { oid: signatureOid, scheme: signatureScheme } = readSignature(buf, sigAlg);
  // The tbs is walked element by element: its revokedCertificates may hold millions of children.
  let p = tbs.contentStart;
  let el = readElement(buf, p, tbs.end);
  if (el.tag === Tag.INTEGER) {
    const v = contentBytes(buf, el);
    if (v.length !== 1 || v[0] !== 1) bad('only v2 (1) may be written as a version (RFC 5280 5.1.2.1)');
    p = el.end;
    el = readElement(buf, p, tbs.end);
  }
  const innerAlg = el;
  if (innerAlg.tag !== Tag.SEQUENCE || buf.compare(buf, sigAlg.contentStart, sigAlg.end, innerAlg.contentStart, innerAlg.end) !== 0) bad('the signature algorithm inside and outside the TBSCertList differ (RFC 5280 5.1.1.2)');
  const issuerEl = readElement(buf, innerAlg.end, tbs.end);
  if (issuerEl.tag !== Tag.SEQUENCE) bad('bad issuer Name');
  const thisEl = readElement(buf, issuerEl.end, tbs.end);
  const thisUpdate = readTime(buf, thisEl);
  p = thisEl.end;
  let nextUpdate: Date | undefined;
  let next: DerElement | undefined = p < tbs.end ? readElement(buf, p, tbs.end) : undefined;
  if (next && (next.tag === Tag.UTC_TIME || next.tag === Tag.GENERALIZED_TIME)) {
    nextUpdate = readTime(buf, next);
    p = next.end;
    next = p < tbs.end ? readElement(buf, p, tbs.end) : undefined;
  }
  let revoked = new SerialSet(buf, new Uint32Array(0), new Uint8Array(0), 0);
  let revokedAt = new Float64Array(0);
  let reasons = new Int8Array(0);
  if (next && next.tag === Tag.SEQUENCE) {
    // An upper bound of the entry count (each entry is at least 2+3+2+13 bytes) sizes the arrays once.
    const cap = Math.min(maxEntries + 1, Math.ceil((next.end - next.contentStart) / 20) + 1);
    const starts = new Uint32Array(cap);
    const lengths = new Uint8Array(cap);
    revokedAt = new Float64Array(cap);
    reasons = new Int8Array(cap).fill(-1);
    let n = 0;
    let q = next.contentStart;
    const listEnd = next.end;
    while (q < listEnd) {
      if (n >= maxEntries) throw new MutualError('CRL_TOO_LARGE', { detail: `more than ${maxEntries} revoked entries` });
      readHeader(buf, q, listEnd);
      if (hTag !== Tag.SEQUENCE) bad(`revoked entry ${n} is not a SEQUENCE`);
      const entryEnd = hEnd;
      readHeader(buf, hStart, entryEnd);
      if (hTag !== Tag.INTEGER || hEnd === hStart) bad(`revoked entry ${n}: bad userCertificate`);
      let s = hStart;
      const serialEnd = hEnd;
      if (serialEnd - s > MAX_CRL_SERIAL_BYTES) bad(`revoked entry ${n}: serial longer than 20 octets`);
      while (s < serialEnd - 1 && buf[s] === 0) s++;
      starts[n] = s;
      lengths[n] = serialEnd - s;
      readHeader(buf, serialEnd, entryEnd);
      revokedAt[n] = readTimeMs(buf, hTag, hStart, hEnd);
      if (hEnd < entryEnd) reasons[n] = hasReasonOnly(buf, hEnd, entryEnd) ? buf[entryEnd - 1] : readEntryExtensions(buf, hEnd, entryEnd, n);
      n++;
      q = entryEnd;
    }
    revoked = new SerialSet(buf, starts.subarray(0, n), lengths.subarray(0, n), n);
    revokedAt = revokedAt.subarray(0, n);
    reasons = reasons.subarray(0, n);
    p = next.end;
    next = p < tbs.end ? readElement(buf, p, tbs.end) : undefined;
  }
  let authorityKeyId: Buffer | undefined;
  let crlNumber: bigint | undefined;
  if (next) {
    if (next.tag !== 0xa0 || next.end !== tbs.end) bad('unexpected field after revokedCertificates');
    const [list, more] = children(buf, next, 2);
    if (!list || more || list.tag !== Tag.SEQUENCE) bad('bad crlExtensions');
    for (const ext of children(buf, list, MAX_CRL_EXTENSIONS)) {
      const { id, critical, value } = readExtension(buf, ext);
      if (id === AKI) {
        const inner = expect(buf, value.contentStart, Tag.SEQUENCE, value.end, 'AuthorityKeyIdentifier');
        for (const c of children(buf, inner, 3)) if (c.tag === 0x80) authorityKeyId = Buffer.from(contentBytes(buf, c));
      } else if (id === CRL_NUMBER) {
        const n = expect(buf, value.contentStart, Tag.INTEGER, value.end, 'CRLNumber');
        const v = contentBytes(buf, n);
        if (v.length === 0 || v.length > 21 || (v[0] & 0x80) !== 0) bad('bad CRL number (RFC 5280 5.2.3)');
        crlNumber = BigInt('0x' + Buffer.from(v).toString('hex'));
      } else if (critical) {
        // Delta CRL indicator, issuing distribution point, or anything else critical (RFC 5280 5.2).
        bad(`unsupported critical CRL extension ${oidToString(Buffer.from(id, 'latin1'))}`);
      }
    }
  }
  return {
    der: buf,
    tbs: Buffer.from(elementBytes(buf, tbs)),
    signatureOid,
    ...(signatureScheme ? { signatureScheme } : {}),
    signature: Buffer.from(sigBits.subarray(1)),
    issuerName: Buffer.from(elementBytes(buf, issuerEl)),
    issuer: nameToString(buf, issuerEl).text,
    ...(authorityKeyId ? { authorityKeyId } : {}),
    ...(crlNumber !== undefined ? { crlNumber } : {}),
    thisUpdate,
    ...(nextUpdate ? { nextUpdate } : {}),
    revoked,
    revokedAt,
    reasons,
  };
}

function readExtension(buf: Buffer, ext: DerElement): { id: string; critical: boolean; value: DerElement } {
  const [id, a, b, c] = ext.tag === Tag.SEQUENCE ? children(buf, ext, 4) : [];
  const value = b ?? a;
  if (!id || id.tag !== Tag.OID || !value || value.tag !== Tag.OCTET_STRING || c || (b && (a.tag !== Tag.BOOLEAN || a.end - a.contentStart !== 1))) bad('bad Extension');
  // Compared as bytes below, so checked here: a malformed OID must not pass as "some other extension".
  checkOid(buf, id);
  const critical = b !== undefined && buf[a.contentStart] !== 0;
  return { id: buf.toString('latin1', id.contentStart, id.end), critical, value };
}

// The crlEntryExtensions mutual writes: only a non-critical reasonCode (RFC 5280 5.3.1), 14 bytes.
const REASON_ONLY = Buffer.from('300c300a0603551d1504030a01', 'hex');

/** True when buf[o..end) is exactly {@link REASON_ONLY} plus one valid reason byte: the fast path. */
function hasReasonOnly(buf: Buffer, o: number, end: number): boolean {
  return end - o === REASON_ONLY.length + 1 && buf[end - 1] <= 10 && buf.compare(REASON_ONLY, 0, REASON_ONLY.length, o, end - 1) === 0;
}

/** Reads a revoked entry's crlEntryExtensions; returns the reason code or -1. */
function readEntryExtensions(buf: Buffer, o: number, end: number, n: number): number {
  const wrapper = readElement(buf, o, end);
  if (wrapper.tag !== Tag.SEQUENCE || wrapper.end !== end) bad(`revoked entry ${n}: bad crlEntryExtensions`);
  let reason = -1;
  for (const ext of children(buf, wrapper, MAX_CRL_EXTENSIONS)) {
    const { id, critical, value } = readExtension(buf, ext);
    if (id === REASON) {
      const e = expect(buf, value.contentStart, Tag.ENUMERATED, value.end, 'CRLReason');
      if (e.end - e.contentStart !== 1 || buf[e.contentStart] > 10) bad(`revoked entry ${n}: bad CRLReason`);
      reason = buf[e.contentStart];
    } else if (id !== INVALIDITY_DATE && critical) {
      // certificateIssuer (indirect CRLs) and unknown critical entry extensions (RFC 5280 5.3).
      bad(`revoked entry ${n}: unsupported critical entry extension ${oidToString(Buffer.from(id, 'latin1'))}`);
    }
  }
  return reason;
}

/**
 * A hash set of serial numbers whose bytes stay where they are in the CRL's DER: open addressing
 * over entry indexes, FNV-1a over the serial bytes, so building it allocates no object or string
 * per entry (~10x faster than a `Map` of hex strings at 100,000 entries, measured here).
 * {@link SerialSet.get} answers with the entry index for `revokedAt`/`reasons`; a serial listed
 * twice answers with its first entry.
 */
export class SerialSet {
  readonly size: number;
  readonly #buf: Buffer;
  readonly #starts: Uint32Array;
  readonly #lengths: Uint8Array;
  /** Entry index + 1 per slot; 0 is empty. */
  readonly #slots: Uint32Array;
  readonly #mask: number;

  constructor(buf: Buffer, starts: Uint32Array, lengths: Uint8Array, n: number) {
    this.#buf = buf;
    this.#starts = starts;
    this.#lengths = lengths;
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    this.#slots = new Uint32Array(cap);
    this.#mask = cap - 1;
    let size = 0;
    for (let i = 0; i < n; i++) {
      const slot = this.#find(buf, starts[i], lengths[i]);
      if (this.#slots[slot] === 0) {
        this.#slots[slot] = i + 1;
        size++;
      }
    }
    this.size = size;
  }

  /** The slot holding these serial bytes, or the empty slot where they would go. */
  #find(b: Uint8Array, start: number, len: number): number {
    let h = 0x811c9dc5;
    for (let i = start; i < start + len; i++) h = Math.imul(h ^ b[i], 0x01000193);
    let slot = (h >>> 0) & this.#mask;
    for (;;) {
      const v = this.#slots[slot];
      if (v === 0) return slot;
      const e = v - 1;
      const s = this.#starts[e];
      if (this.#lengths[e] === len) {
        let same = true;
        for (let i = 0; i < len; i++) {
          if (this.#buf[s + i] !== b[start + i]) {
            same = false;
            break;
          }
        }
        if (same) return slot;
      }
      slot = (slot + 1) & this.#mask;
    }
  }

  /** The entry index of a serial (hex, or magnitude bytes without leading zeros), or undefined. */
  get(serial: string | Uint8Array): number | undefined {
    if (this.size === 0) return undefined;
    const bytes = typeof serial === 'string' ? Buffer.from(serial.length % 2 ? '0' + serial : serial, 'hex') : serial;
    let s = 0;
    while (s < bytes.length - 1 && bytes[s] === 0) s++;
    const v = this.#slots[this.#find(bytes, s, bytes.length - s)];
    return v === 0 ? undefined : v - 1;
  }

  /** True when the serial is listed. */
  has(serial: string | Uint8Array): boolean {
    return this.get(serial) !== undefined;
  }

  /** The serial of entry i, as lowercase hex. */
  serialAt(i: number): string {
    return this.#buf.toString('hex', this.#starts[i], this.#starts[i] + this.#lengths[i]);
  }
}

/** How one serial stands in a CRL: undefined when it is not listed. */
export function crlRevocation(crl: CrlInfo, serial: string | Uint8Array): { revokedAt: Date; reason?: RevocationReason | number } | undefined {
  const i = crl.revoked.get(serial);
  if (i === undefined) return undefined;
  const code = crl.reasons[i];
  return { revokedAt: new Date(crl.revokedAt[i]), ...(code >= 0 ? { reason: reasonName(code) ?? code } : {}) };
}

/**
 * True when the CRL is signed by `issuerKey` with an accepted algorithm (no SHA-1; RSASSA-PSS with
 * the hash, MGF1 hash and salt length its parameters name), and, when both
 * the CRL's AKI and `issuerKeyId` (the issuer certificate's subject key identifier) are known,
 * they are equal. Names are compared by the caller, who knows which CA it expects.
 */
export function verifyCrlSignature(crl: CrlInfo, issuerKey: KeyObject, issuerKeyId?: Buffer): boolean {
  if (crl.authorityKeyId && issuerKeyId && !crl.authorityKeyId.equals(issuerKeyId)) return false;
  return verifySignature(crl.signatureScheme, crl.tbs, issuerKey, crl.signature);
}
