/**
 * RFC 9773 (ACME Renewal Information): the certificate id a client sends, and the window in
 * which the CA suggests renewing.
 */
import { MutualError } from '../../core/errors.ts';
import type { RenewalInfo } from './acme-api.ts';

/** How long a client waits before asking again about a certificate in good standing. */
export const RENEWAL_INFO_RETRY_SECONDS = 6 * 3600;
/** ... and about one to replace now (revoked, or from a retired intermediate). */
export const RENEWAL_INFO_URGENT_RETRY_SECONDS = 3600;

/**
 * Splits an ARI certificate id, base64url(AKI keyIdentifier) "." base64url(serial DER content
 * bytes), into the issuer key id and the serial as the inventory keeps them (lowercase hex,
 * without leading zero bytes). ACME_MALFORMED when it is not one.
 */
export function parseCertId(certId: string): { issuerKeyId: string; serial: string } {
  const m = typeof certId === 'string' && certId.length <= 200 ? /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(certId) : null;
  if (!m) throw new MutualError('ACME_MALFORMED', { detail: 'a renewalInfo id is base64url(keyIdentifier).base64url(serial)' });
  const kid = Buffer.from(m[1], 'base64url');
  let serial = Buffer.from(m[2], 'base64url');
  if (kid.length === 0 || serial.length === 0 || serial.length > 20) throw new MutualError('ACME_MALFORMED', { detail: 'the key identifier or serial is empty or too long' });
  while (serial.length > 1 && serial[0] === 0) serial = serial.subarray(1);
  return { issuerKeyId: kid.toString('hex'), serial: serial.toString('hex') };
}

/** The ARI id of a certificate: base64url of its issuer key id and of its serial's DER content bytes. */
export function certIdOf(issuerKeyId: string, serialHex: string): string {
  const s = Buffer.from(serialHex.length % 2 ? '0' + serialHex : serialHex, 'hex');
  const content = s[0] & 0x80 ? Buffer.concat([Buffer.from([0]), s]) : s;
  return `${Buffer.from(issuerKeyId, 'hex').toString('base64url')}.${content.toString('base64url')}`;
}

/**
 * The suggested window: the last third of the lifetime, ending before the last ninth (so a client
 * renewing at the end of the window still has time to deploy); now, in the past, for a
 * certificate that should be replaced at once.
 */
export function renewalWindow(c: { notBefore: Date; notAfter: Date }, replaceNow: boolean, now: Date): RenewalInfo {
  if (replaceNow) {
    return { suggestedWindow: { start: new Date(now.getTime() - 3600_000), end: new Date(now.getTime() - 60_000) }, retryAfterSeconds: RENEWAL_INFO_URGENT_RETRY_SECONDS };
  }
  const life = c.notAfter.getTime() - c.notBefore.getTime();
  return {
    suggestedWindow: { start: new Date(c.notBefore.getTime() + Math.round((life * 2) / 3)), end: new Date(c.notAfter.getTime() - Math.round(life / 9)) },
    retryAfterSeconds: Math.max(60, Math.min(RENEWAL_INFO_RETRY_SECONDS, Math.round(life / 1000 / 10))),
  };
}
