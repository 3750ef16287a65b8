/**
 * RFC 5280 CRLReason names and codes. A module of its own (it imports only the error registry) so
 * the command line can offer the names without loading the CRL encoder (core/crl.ts re-exports them).
 */
import { MutualError } from './errors.ts';

/** RFC 5280 5.3.1 CRLReason codes (7 is unused; removeFromCRL (8) is for delta CRLs, which mutual does not make). */
export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
  aACompromise: 10,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

/** Checks a reason name given by a user; throws REVOKE_BAD_REASON. */
export function parseRevocationReason(name: string): RevocationReason {
  if (Object.hasOwn(REVOCATION_REASONS, name)) return name as RevocationReason;
  throw new MutualError('REVOKE_BAD_REASON', { detail: JSON.stringify(name.slice(0, 40)) });
}

/** The reason name for a code. */
export function reasonName(code: number): RevocationReason | undefined {
  return (Object.keys(REVOCATION_REASONS) as RevocationReason[]).find((k) => REVOCATION_REASONS[k] === code);
}
