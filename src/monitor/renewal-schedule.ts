/**
 * Certificates that something renews on its own are judged against that schedule, not against
 * fixed day counts: `mutual serve` issues its OCSP responder certificates (2 days, replaced at
 * half their life, src/ca/ocsp-responders.ts) and its own TLS certificate (7 days by default,
 * replaced at 2/3, src/ca/self-renewal.ts). A 47-hour-old responder certificate is not news; one
 * whose replacement is overdue means serve is down or failing to renew, and the fix is there.
 * They are recognised from what the inventory records: role `ocsp` (only serve issues those) and
 * role `server` issued by actor `serve`.
 */

/** How a certificate is renewed when something renews it on its own. */
export interface RenewalSchedule {
  /** Fraction of the lifetime after which it is replaced. */
  renewAtFraction: number;
  /** What it is, for messages (e.g. `mutual serve's OCSP responder certificate`). */
  what: string;
  /** What to do when the renewal is overdue. */
  fix: string;
}

/**
 * A renewal is overdue once this fraction of the time left at the renewal moment has passed
 * without one (serve retries a failed renewal every minute; the monitor runs hourly by default).
 */
export const RENEWAL_OVERDUE_FRACTION = 1 / 4;
/** An overdue renewal is critical once less than this fraction of the time left at the renewal moment remains. */
export const RENEWAL_CRITICAL_FRACTION = 1 / 4;

const SERVE_FIX = 'mutual serve renews this certificate itself: check that it is running (`systemctl status mutual-serve`) and read its log (`journalctl -u mutual-serve`) for why it did not renew; restarting it issues a fresh one. Do not issue one by hand.';

/** serve's OCSP responder certificates: replaced at half their life (src/ca/ocsp-responders.ts). */
export const OCSP_RESPONDER_SCHEDULE: RenewalSchedule = { renewAtFraction: 1 / 2, what: 'OCSP responder certificate of mutual serve', fix: SERVE_FIX };
/** serve's own TLS certificate: replaced at 2/3 of its life (src/ca/self-renewal.ts). */
export const SERVE_TLS_SCHEDULE: RenewalSchedule = { renewAtFraction: 2 / 3, what: 'TLS certificate of mutual serve', fix: SERVE_FIX };

/** The actor serve records when it issues its own TLS certificate. */
export const SERVE_ACTOR = 'serve';

/** The schedule of an inventory record that renews itself, or undefined (someone has to renew it). */
export function renewalScheduleOf(r: { role: string; issuedBy?: string }): RenewalSchedule | undefined {
  if (r.role === 'ocsp') return OCSP_RESPONDER_SCHEDULE;
  if (r.role === 'server' && r.issuedBy === SERVE_ACTOR) return SERVE_TLS_SCHEDULE;
  return undefined;
}
