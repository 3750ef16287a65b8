/**
 * A small DER writer and a strict, bounded DER reader.
 *
 * The writer exists for the hot paths (TBSCertificate, TBSCertList, OCSP responses): the pieces that
 * are the same for every certificate are encoded once and concatenated with the per-certificate
 * ones. The reader exists because a general ASN.1 library costs ~200 µs to parse one CSR here
 * (measured with @peculiar/asn1-schema), more than the whole per-certificate budget; it reads only
 * what it is asked for, enforces DER's rules (definite, minimal lengths) and a hard size limit, and
 * every structure read through it is cross-checked against the library and OpenSSL in tests.
 */
import { MutualError } from './errors.ts';

/** Universal tags used by mutual. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Encodes a DER length. */
export function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.from([0x84, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** Size of the header (tag + length) for a value of `n` bytes. */
export function headerSize(n: number): number {
  return n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : n < 0x1000000 ? 5 : 6;
}

/** Writes a tag and length at `offset` of `buf`; returns the offset after the header. */
export function writeHeader(buf: Buffer, offset: number, tag: number, n: number): number {
  buf[offset++] = tag;
  if (n < 0x80) {
    buf[offset++] = n;
  } else if (n < 0x100) {
    buf[offset++] = 0x81;
    buf[offset++] = n;
  } else if (n < 0x10000) {
    buf[offset++] = 0x82;
    buf.writeUInt16BE(n, offset);
    offset += 2;
  } else if (n < 0x1000000) {
    buf[offset++] = 0x83;
    buf.writeUIntBE(n, offset, 3);
    offset += 3;
  } else {
    buf[offset++] = 0x84;
    buf.writeUInt32BE(n, offset);
    offset += 4;
  }
  return offset;
}

/** A tag-length-value element from already encoded parts. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = Buffer.allocUnsafe(headerSize(n) + n);
  let o = writeHeader(out, 0, tag, n);
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const seq = (...parts: Uint8Array[]): Buffer => tlv(Tag.SEQUENCE, ...parts);
export const set = (...parts: Uint8Array[]): Buffer => tlv(Tag.SET, ...parts);
/** Context-specific constructed tag `[n]` (EXPLICIT tagging, or IMPLICIT of a constructed type). */
export const explicit = (n: number, ...parts: Uint8Array[]): Buffer => tlv(0xa0 | n, ...parts);
/** Context-specific primitive tag `[n]` (IMPLICIT of a primitive type). */
export const implicit = (n: number, value: Uint8Array): Buffer => tlv(0x80 | n, value);
export const octetString = (v: Uint8Array): Buffer => tlv(Tag.OCTET_STRING, v);
export const bitString = (v: Uint8Array, unusedBits = 0): Buffer => tlv(Tag.BIT_STRING, Buffer.from([unusedBits]), v);
export const utf8String = (s: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));
export const printableString = (s: string): Buffer => tlv(Tag.PRINTABLE_STRING, Buffer.from(s, 'latin1'));
export const ia5String = (s: string): Buffer => tlv(Tag.IA5_STRING, Buffer.from(s, 'latin1'));
export const derNull = (): Buffer => Buffer.from([Tag.NULL, 0]);
export const boolean = (v: boolean): Buffer => Buffer.from([Tag.BOOLEAN, 1, v ? 0xff : 0]);

/** Encoded OIDs by dotted form: mutual writes a few dozen, over and over (bounded all the same). */
const oidCache = new Map<string, Buffer>();
const OID_CACHE_MAX = 1024;

/** Encodes an OBJECT IDENTIFIER from its dotted form. The Buffer may be shared: do not modify it. */
export function oid(dotted: string): Buffer {
  let out = oidCache.get(dotted);
  if (out) return out;
  out = encodeOid(dotted);
  if (oidCache.size < OID_CACHE_MAX) oidCache.set(dotted, out);
  return out;
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  if (arcs.length < 2) throw new TypeError(`OID needs at least two arcs: ${dotted}`);
  const bytes: number[] = [];
  const push = (v: bigint) => {
    const tmp: number[] = [Number(v & 0x7fn)];
    v >>= 7n;
    while (v > 0n) {
      tmp.unshift(Number((v & 0x7fn) | 0x80n));
      v >>= 7n;
    }
    bytes.push(...tmp);
  };
  push(arcs[0] * 40n + arcs[1]);
  for (const a of arcs.slice(2)) push(a);
  return tlv(Tag.OID, Buffer.from(bytes));
}

/** Decodes the contents of an OBJECT IDENTIFIER to its dotted form. */
export function oidToString(content: Uint8Array): string {
  // Arcs are read as plain numbers while they fit in 2^48 (every OID mutual meets); BigInt
  // only past that. This runs several times per CSR, so it is kept cheap.
  let out = '';
  let v = 0;
  let big: bigint | undefined;
  let first = true;
  for (let i = 0; i < content.length; i++) {
    const b = content[i];
    if (big !== undefined) big = (big << 7n) | BigInt(b & 0x7f);
    else if (v >= 2 ** 41) big = (BigInt(v) << 7n) | BigInt(b & 0x7f);
    else v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      const arc = big ?? v;
      if (first) {
        const n = typeof arc === 'bigint' ? arc : BigInt(arc);
        out = n < 40n ? `0.${n}` : n < 80n ? `1.${n - 40n}` : `2.${n - 80n}`;
        first = false;
      } else out += '.' + String(arc);
      v = 0;
      big = undefined;
    }
  }
  return out;
}

/** Encodes an unsigned big-endian magnitude as a DER INTEGER (adds a 0x00 if the top bit is set). */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const m = magnitude.subarray(start);
  return (m[0] & 0x80) !== 0 ? tlv(Tag.INTEGER, Buffer.from([0]), m) : tlv(Tag.INTEGER, m);
}

/** Encodes a small non-negative integer. */
export function integer(n: number | bigint): Buffer {
  let v = BigInt(n);
  if (v < 0n) throw new TypeError('negative integers are not used by mutual');
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  return unsignedInteger(Buffer.from(bytes));
}

export const enumerated = (n: number): Buffer => {
  const i = integer(n);
  i[0] = Tag.ENUMERATED;
  return i;
};

const pad2 = (n: number) => (n < 10 ? '0' + n : String(n));

/**
 * Encodes a time as RFC 5280 requires (4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050,
 * always in Z and to the second. A Date with milliseconds is a programming error.
 */
export function time(d: Date): Buffer {
  if (d.getTime() % 1000 !== 0) throw new TypeError('times must be whole seconds (RFC 5280 4.1.2.5)');
  const y = d.getUTCFullYear();
  const rest = pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) + pad2(d.getUTCHours()) + pad2(d.getUTCMinutes()) + pad2(d.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(Tag.UTC_TIME, Buffer.from(pad2(y % 100) + rest, 'latin1'));
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

/** Rounds a date down to the whole second. */
export function floorSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

// ---------------------------------------------------------------------------------------------
// Reader

/** One element read from DER: its tag, and where its header and contents lie in `buf`. */
export interface DerElement {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just after the last content byte. */
  end: number;
}

/** Bytes of an element, header included. */
export const elementBytes = (buf: Uint8Array, e: DerElement): Uint8Array => buf.subarray(e.start, e.end);
/** Bytes of an element's contents. */
export const contentBytes = (buf: Uint8Array, e: DerElement): Uint8Array => buf.subarray(e.contentStart, e.end);

/**
 * Reads one DER element at `offset`, refusing indefinite and non-minimal lengths, multi-byte tags,
 * and anything running past `limit`.
 */
export function readElement(buf: Uint8Array, offset: number, limit: number = buf.length): DerElement {
  const bad = (why: string): never => {
    throw new MutualError('DER_MALFORMED', { detail: `${why} at byte ${offset}` });
  };
  if (offset + 2 > limit) bad('truncated header');
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) bad('multi-byte tags are not used here');
  let o = offset + 1;
  let len = buf[o++];
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) bad('indefinite length is not DER');
    if (n > 4) bad('length too large');
    if (o + n > limit) bad('truncated length');
    if (buf[o] === 0) bad('non-minimal length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[o++];
    if (len < 0x80) bad('non-minimal length');
  }
  const end = o + len;
  if (end > limit) bad('element runs past its container');
  return { tag, start: offset, contentStart: o, end };
}

/** Reads an element and checks its tag. */
export function expect(buf: Uint8Array, offset: number, tag: number, limit: number, what: string): DerElement {
  const e = readElement(buf, offset, limit);
  if (e.tag !== tag) {
    throw new MutualError('DER_MALFORMED', { detail: `expected ${what} (tag 0x${tag.toString(16)}), found tag 0x${e.tag.toString(16)} at byte ${offset}` });
  }
  return e;
}

/**
 * The children of a constructed element, at most `maxChildren` of them. A primitive element has
 * none: reading its contents as elements would accept, say, an INTEGER where a SET belongs.
 */
export function children(buf: Uint8Array, parent: DerElement, maxChildren: number): DerElement[] {
  if ((parent.tag & 0x20) === 0) throw new MutualError('DER_MALFORMED', { detail: `expected a constructed element, found tag 0x${parent.tag.toString(16)} at byte ${parent.start}` });
  const out: DerElement[] = [];
  let o = parent.contentStart;
  while (o < parent.end) {
    if (out.length >= maxChildren) {
      throw new MutualError('DER_TOO_COMPLEX', { detail: `more than ${maxChildren} elements in one structure` });
    }
    const e = readElement(buf, o, parent.end);
    out.push(e);
    o = e.end;
  }
  return out;
}

/**
 * Reads an OBJECT IDENTIFIER element strictly (X.690 8.19: at least one arc, every arc in the fewest
 * bytes, the last byte closing its arc) and returns its dotted form. {@link oidToString} alone
 * decodes whatever it is given; this is for OIDs whose exact bytes decide something.
 */
export function readOid(buf: Uint8Array, e: DerElement): string {
  if (e.tag !== Tag.OID) throw new MutualError('DER_MALFORMED', { detail: `expected an OBJECT IDENTIFIER at byte ${e.start}` });
  checkOid(buf, e);
  return oidToString(contentBytes(buf, e));
}

/** Checks an OBJECT IDENTIFIER's contents as {@link readOid} does, without decoding them (for OIDs compared as bytes). */
export function checkOid(buf: Uint8Array, e: DerElement): void {
  let ok = e.end > e.contentStart && (buf[e.end - 1] & 0x80) === 0;
  for (let i = e.contentStart; ok && i < e.end; i++) if (buf[i] === 0x80 && (i === e.contentStart || (buf[i - 1] & 0x80) === 0)) ok = false;
  if (!ok) throw new MutualError('DER_MALFORMED', { detail: `bad OBJECT IDENTIFIER at byte ${e.start}` });
}

/** DER's rules for one element's tag and, for the simple universal types, its contents (X.690 8, 10, 11). */
function checkElement(buf: Uint8Array, e: DerElement): void {
  const t = e.tag;
  const v = contentBytes(buf, e);
  let why = '';
  if ((t & 0xc0) === 0) {
    // Universal class: tag 0 is reserved (end-of-contents), and DER builds only SEQUENCE and SET (X.690 10.2).
    if ((t & 0x1f) === 0 || ((t & 0x20) !== 0 && t !== Tag.SEQUENCE && t !== Tag.SET)) why = 'a reserved or constructed universal tag';
    else if (t === Tag.BOOLEAN && (v.length !== 1 || (v[0] !== 0 && v[0] !== 0xff))) why = 'a BOOLEAN other than 00 or FF';
    else if (t === Tag.NULL && v.length !== 0) why = 'a NULL with contents';
    else if ((t === Tag.INTEGER || t === Tag.ENUMERATED) && (v.length === 0 || (v.length > 1 && ((v[0] === 0 && (v[1] & 0x80) === 0) || (v[0] === 0xff && (v[1] & 0x80) !== 0))))) why = 'an empty or non-minimal INTEGER';
    else if (t === Tag.BIT_STRING && (v.length === 0 || v[0] > 7 || (v.length === 1 && v[0] !== 0))) why = 'a BIT STRING with bad unused bits';
    else if (t === Tag.OID) readOid(buf, e);
  }
  if (why) throw new MutualError('DER_MALFORMED', { detail: `${why} at byte ${e.start}` });
}

/**
 * Checks that an element mutual does not otherwise read is well-formed DER all the way down: every
 * constructed element holds complete elements, the simple universal types are encoded as DER
 * requires, at most `maxDepth` deep and `maxElements` in all (else DER_TOO_COMPLEX). For the parts
 * of untrusted input that are carried or skipped rather than read (unknown attributes and
 * parameters), so that "accepted" means "well-formed" everywhere, as it does for OpenSSL.
 */
export function checkWellFormed(buf: Uint8Array, e: DerElement, maxDepth: number, maxElements: number): void {
  let count = 0;
  const stack: { el: DerElement; depth: number }[] = [{ el: e, depth: 0 }];
  while (stack.length > 0) {
    const { el, depth } = stack.pop()!;
    checkElement(buf, el);
    if ((el.tag & 0x20) === 0) continue;
    if (depth >= maxDepth) throw new MutualError('DER_TOO_COMPLEX', { detail: `nested more than ${maxDepth} deep` });
    for (let o = el.contentStart; o < el.end;) {
      if (++count > maxElements) throw new MutualError('DER_TOO_COMPLEX', { detail: `more than ${maxElements} elements in one structure` });
      const child = readElement(buf, o, el.end);
      stack.push({ el: child, depth: depth + 1 });
      o = child.end;
    }
  }
}

/**
 * Parses a DER time (UTCTime or GeneralizedTime, Z form, whole seconds), refusing dates that do
 * not exist (month 13, 31 April, hour 24...): Date.UTC would roll them over into another time.
 */
export function readTime(buf: Uint8Array, e: DerElement): Date {
  const s = Buffer.from(contentBytes(buf, e)).toString('latin1');
  let m: RegExpMatchArray | null;
  let year = -1;
  if (e.tag === Tag.UTC_TIME && (m = s.match(/^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/))) {
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (e.tag === Tag.GENERALIZED_TIME && (m = s.match(/^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/))) {
    year = Number(m[1]);
  } else {
    m = null;
  }
  if (m) {
    const [month, day, h, min, sec] = [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])];
    const d = new Date(Date.UTC(year, month - 1, day, h, min, sec));
    if (d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day && d.getUTCHours() === h && d.getUTCMinutes() === min && d.getUTCSeconds() === sec) return d;
  }
  throw new MutualError('DER_MALFORMED', { detail: `bad time value ${JSON.stringify(s.slice(0, 20))}` });
}
