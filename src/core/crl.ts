/**
 * Certificate revocation lists (RFC 5280 section 5). Revoked entries are encoded once, at
 * revocation, and kept as DER; a CRL is then one pass that copies those bytes into a Buffer sized
 * up front, plus one signature. No per-entry objects: a 1,000,000-entry CRL is ~35 MB of copying.
 */
import { MutualError } from './errors.ts';
import { OID } from './oids.ts';
import {
  Tag, bitString, enumerated, explicit, headerSize, implicit, integer, octetString, oid, readElement, seq, time, unsignedInteger, writeHeader,
} from './der.ts';
import type { Signer } from './signer.ts';

import { REVOCATION_REASONS, parseRevocationReason, reasonName, type RevocationReason } from './revocation-reasons.ts';
/** RFC 5280 5.3.1 CRLReason codes and their names: see ./revocation-reasons.ts. */
export { REVOCATION_REASONS, parseRevocationReason, reasonName, type RevocationReason };

const REASON_EXT_OID = oid(OID.crlReason);

/**
 * Encodes one revokedCertificates entry. The reasonCode extension is left out for `unspecified`,
 * as RFC 5280 5.3.1 asks.
 */
export function encodeRevokedEntry(serial: Uint8Array, revokedAt: Date, reason: RevocationReason = 'unspecified'): Buffer {
  const code = REVOCATION_REASONS[reason];
  if (code === 0) return seq(unsignedInteger(serial), time(revokedAt));
  return seq(unsignedInteger(serial), time(revokedAt), seq(seq(REASON_EXT_OID, octetString(enumerated(code)))));
}

/**
 * Keeps the entries whose certificate is still unexpired at `now`. `notAfter[i]` (seconds since the
 * epoch) belongs to the i-th entry of `entries`; expired certificates drop off the CRL (RFC 5280 3.3).
 */
export function dropExpired(entries: Buffer, notAfter: Uint32Array, now: Date): Buffer {
  const cut = Math.floor(now.getTime() / 1000);
  const out = Buffer.allocUnsafe(entries.length);
  let o = 0;
  let i = 0;
  for (let p = 0; p < entries.length; i++) {
    const e = readElement(entries, p);
    if (notAfter[i] > cut) o += entries.copy(out, o, p, e.end);
    p = e.end;
  }
  if (i !== notAfter.length) throw new MutualError('DER_MALFORMED', { detail: `CRL chunk has ${i} entries but ${notAfter.length} expiry times` });
  return out.subarray(0, o);
}

/** What a CRL is made from. */
export interface BuildCrlOptions {
  /** DER of the issuer's subject Name. */
  issuerName: Buffer;
  /** The issuer's subject key identifier (AKI, RFC 5280 5.2.1). */
  authorityKeyId: Buffer;
  /** CRL number, monotonically increasing per issuer (RFC 5280 5.2.3). */
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Pre-encoded revoked entries, in any number of chunks of concatenated entries. */
  entries: Iterable<Uint8Array>;
  signer: Signer;
}

/** Builds and signs a CRL; returns its DER. */
export async function buildCrl(o: BuildCrlOptions): Promise<Buffer> {
  const chunks = [...o.entries];
  let entriesLength = 0;
  for (const c of chunks) entriesLength += c.length;
  const head = Buffer.concat([integer(1), o.signer.algorithm.der, o.issuerName, time(o.thisUpdate), time(o.nextUpdate)]);
  const exts = explicit(0, seq(
    seq(oid(OID.authorityKeyIdentifier), octetString(seq(implicit(0, o.authorityKeyId)))),
    seq(oid(OID.crlNumber), octetString(integer(o.crlNumber))),
  ));
  // RFC 5280 5.1.2.6: when there are no revoked certificates the list is absent, not empty.
  const revokedLength = entriesLength === 0 ? 0 : headerSize(entriesLength) + entriesLength;
  const tbsLength = head.length + revokedLength + exts.length;
  const tbs = Buffer.allocUnsafe(headerSize(tbsLength) + tbsLength);
  let p = writeHeader(tbs, 0, Tag.SEQUENCE, tbsLength);
  p += head.copy(tbs, p);
  if (entriesLength > 0) {
    p = writeHeader(tbs, p, Tag.SEQUENCE, entriesLength);
    for (const c of chunks) {
      tbs.set(c, p);
      p += c.length;
    }
  }
  p += exts.copy(tbs, p);
  const signature = await o.signer.sign(tbs);
  return seq(tbs, o.signer.algorithm.der, bitString(signature));
}
