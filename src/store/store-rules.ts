/**
 * Rules the SQLite and PostgreSQL stores apply alike, so both answer the same.
 */
import { MutualError } from '../core/errors.ts';

/** Loose CRL entries per issuer before they are packed into a chunk. */
export const CRL_PACK_THRESHOLD = 4096;

/**
 * Throws RENEWAL_TOO_SOON when `recent` (issue times of the certificate's renewals inside the
 * window, newest first, at most `limit.max`) already fills the limit. Shared by both stores.
 */
export function checkRenewalLimit(serial: string, now: number, recent: number[], limit: { max: number; windowSeconds: number }): void {
  if (recent.length < limit.max) return;
  const retryAfter = Math.max(1, recent[limit.max - 1] + limit.windowSeconds - now);
  throw new MutualError('RENEWAL_TOO_SOON', { serial, retryAfter, detail: `${serial} was renewed ${recent.length} times in the last ${limit.windowSeconds} s; retry in ${retryAfter} s` });
}
