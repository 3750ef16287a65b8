/**
 * The agent's use of a fetched CRL: it must be signed by the CA certificate it claims (name and
 * key), not be past its nextUpdate, and not be older than the one already on disk (a replayed old
 * CRL would un-revoke certificates). Parsing is the core CRL reader's.
 */
import crypto from 'node:crypto';
import { parseCertificate } from '../core/certificate.ts';
import { parseCrl, verifyCrlSignature, type CrlInfo } from '../core/crl-reader.ts';
import { MutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';

/** Parses a CRL and checks it against its issuer's certificate (PEM) at `now`. Throws CRL_* errors. */
export function checkCrl(der: Uint8Array, issuerPem: string, now: Date, what: string): CrlInfo {
  const crl = parseCrl(der);
  const issuer = parseCertificate(readPemOrDer(issuerPem, ['CERTIFICATE']));
  if (!crl.issuerName.equals(issuer.subjectName)) throw new MutualError('CRL_BAD_SIGNATURE', { detail: `${what}: issued by "${crl.issuer}", expected "${issuer.subject}"` });
  if (!verifyCrlSignature(crl, crypto.createPublicKey({ key: issuer.spki, format: 'der', type: 'spki' }), issuer.subjectKeyId)) {
    throw new MutualError('CRL_BAD_SIGNATURE', { detail: `${what}: the signature does not verify with ${issuer.subject}'s key` });
  }
  if (crl.nextUpdate && crl.nextUpdate.getTime() <= now.getTime()) {
    throw new MutualError('CRL_MALFORMED', { detail: `${what}: past its nextUpdate ${crl.nextUpdate.toISOString()}` });
  }
  return crl;
}

/** True when `candidate` is not older than `current` (CRL number first, then thisUpdate). */
export function isNotOlder(candidate: CrlInfo, current: CrlInfo): boolean {
  if (candidate.crlNumber !== undefined && current.crlNumber !== undefined) return candidate.crlNumber >= current.crlNumber;
  return candidate.thisUpdate.getTime() >= current.thisUpdate.getTime();
}

export type { CrlInfo };
