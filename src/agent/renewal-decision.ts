/**
 * The renewal decision: given a certificate in place, the clock, the renewal schedule, the CA's
 * CRL and what the state file remembers, what a cycle does for it. No I/O: the caller reads the
 * certificate, the CRL and the token, and acts on the answer (enroll, renew, redeploy, wait).
 */
import type { CertificateInfo } from '../core/certificate.ts';
import type { AriState } from './agent-state.ts';
import type { CrlInfo } from './crl-check.ts';
import { renewalTime } from './schedule.ts';

/** The renewal settings of agent.yaml that place the renewal point. */
export interface RenewalSchedule {
  /** Fraction of the lifetime (0..1) at which a certificate is renewed. */
  fraction: number;
  /** Spread (fraction of the lifetime) centred on `fraction`, derived from the serial. */
  jitter: number;
}

/** The parts of a certificate the decision reads. */
export type DecisionCertificate = Pick<CertificateInfo, 'serial' | 'notBefore' | 'notAfter' | 'authorityKeyId'>;

/**
 * When a certificate is due for renewal: the time chosen in the ACME server's suggested window
 * when it gave one for this serial (`ari`), else the schedule's point of the lifetime. `obtained`
 * maps serials to when the agent obtained them (the state file's `obtained`): the lifetime counts
 * from then when the CA backdated notBefore.
 */
export function renewAt(info: Pick<CertificateInfo, 'serial' | 'notBefore' | 'notAfter'>, obtained: Record<string, string>, schedule: RenewalSchedule, ari?: AriState): Date {
  if (ari?.serial === info.serial) return new Date(ari.renewAt);
  const got = obtained[info.serial];
  return renewalTime({ serial: info.serial, notBefore: info.notBefore, notAfter: info.notAfter, obtainedAt: got ? new Date(got) : undefined, fraction: schedule.fraction, jitter: schedule.jitter });
}

/**
 * True when the certificate is revoked: the CA said so when asked to renew it (`revokedSerial`), or
 * the CRL covering it lists its serial. A CRL naming another issuer key than the certificate's
 * authority key id does not count (serials are 16 random bytes, but only per issuer).
 */
export function isRevoked(info: DecisionCertificate, revokedSerial: string | undefined, crl: CrlInfo | undefined): boolean {
  if (revokedSerial === info.serial) return true;
  if (!crl) return false;
  if (crl.authorityKeyId && info.authorityKeyId && !info.authorityKeyId.equals(crl.authorityKeyId)) return false;
  return crl.revoked.has(info.serial);
}

/** Result codes that a new token can cure: a certificate waiting on them retries as soon as one appears. */
const TOKEN_CURABLE = (code: string): boolean => code === 'AGENT_TOKEN_NEEDED' || code === 'AGENT_REVOKED' || code.startsWith('TOKEN_');

/** Inputs of {@link inBackoff}. */
export interface BackoffOptions {
  now: Date;
  /** When the state file says the next attempt is due (after a failure). */
  nextAttemptAt?: string;
  /** The code of the last failure. */
  lastCode?: string;
  /** `once` and `rotate` attempt what is due whatever the backoff. */
  ignoreBackoff: boolean;
  /** The certificate is forced (`rotate`). */
  forced: boolean;
  /** Whether an unused token is configured; asked only when it decides. */
  hasFreshToken: () => boolean;
}

/** True when the certificate is inside a retry backoff and this cycle leaves it alone. */
export function inBackoff(o: BackoffOptions): boolean {
  if (o.ignoreBackoff || o.forced || !o.nextAttemptAt || o.now.getTime() >= Date.parse(o.nextAttemptAt)) return false;
  // A new token ends the wait of a certificate that needs one.
  if (TOKEN_CURABLE(o.lastCode ?? '') && o.hasFreshToken()) return false;
  return true;
}

/**
 * True when an interrupted deployment's generation can still be deployed: its key matches its
 * certificate, which has not expired and is not revoked. Otherwise it is dropped.
 */
export function canResume(o: { now: Date; info: DecisionCertificate; keyMatches: boolean; revokedSerial?: string; crl?: CrlInfo }): boolean {
  return o.keyMatches && o.now < o.info.notAfter && !isRevoked(o.info, o.revokedSerial, o.crl);
}

/** Inputs of {@link decideRenewal}. */
export interface RenewalInput {
  now: Date;
  /** The certificate in place; none before the first enrollment. */
  current?: DecisionCertificate;
  schedule: RenewalSchedule;
  /** The state file's serial -> obtainedAt. */
  obtained: Record<string, string>;
  /** The ACME server's renewal information, when it gave some (it replaces the schedule). */
  ari?: AriState;
  /** The serial the CA refused to renew as revoked, if any. */
  revokedSerial?: string;
  /** The cached CRL covering `current`. */
  crl?: CrlInfo;
  /** Renew now, due or not (`rotate`). */
  forced: boolean;
  /** Why the certificate must move to another root now (a root rollover, agent/root-set.ts), if so. */
  moveRoot?: string;
  /**
   * Why the files in place differ from what agent.yaml asks, or undefined; asked only when nothing
   * else is needed (it reads the disk).
   */
  drift: () => string | undefined;
}

/** What a certificate needs; `why` is said in the logs and in a token-needed error. */
export type RenewalDecision =
  | { need: 'none' }
  | { need: 'enroll'; why: string; revoked: boolean }
  | { need: 'renew'; why: '' }
  | { need: 'redeploy'; why: string };

/**
 * What a certificate needs now, in order: enrollment (none yet, or revoked: a revoked certificate
 * cannot renew itself), renewal (forced, past its renewal point, or under a root being retired), a redeployment of the same
 * certificate (drifted links, files, modes or owners), or nothing.
 */
export function decideRenewal(o: RenewalInput): RenewalDecision {
  const cur = o.current;
  if (!cur) return { need: 'enroll', why: 'no certificate yet', revoked: false };
  if (isRevoked(cur, o.revokedSerial, o.crl)) return { need: 'enroll', why: `${cur.serial} is revoked`, revoked: true };
  if (o.forced || o.moveRoot || o.now >= renewAt(cur, o.obtained, o.schedule, o.ari)) return { need: 'renew', why: '' };
  const drift = o.drift();
  return drift ? { need: 'redeploy', why: drift } : { need: 'none' };
}

/**
 * The warning for a certificate that could not be renewed and has less than `warnFraction` of its
 * lifetime left (AGENT_CERT_EXPIRING), or undefined.
 */
export function expiryWarning(name: string, info: Pick<CertificateInfo, 'serial' | 'notBefore' | 'notAfter'>, now: Date, warnFraction: number): string | undefined {
  const left = info.notAfter.getTime() - now.getTime();
  const life = info.notAfter.getTime() - info.notBefore.getTime();
  if (left > life * warnFraction) return undefined;
  return left <= 0 ? `${name}: ${info.serial} expired at ${info.notAfter.toISOString()}` : `${name}: ${info.serial} expires in ${Math.round(left / 1000)} s and could not be renewed`;
}
