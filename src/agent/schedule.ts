/**
 * When to renew and when to retry. The renewal point is a fraction of the lifetime with a jitter
 * derived from the serial, so every run of `mutual agent once` agrees on it while a fleet issued
 * at the same moment still spreads its renewals.
 */
import crypto from 'node:crypto';

/** A failed attempt is never retried sooner than this, whatever the configuration. */
export const MIN_RETRY_MS = 100;

/** Inputs of {@link renewalTime}. */
export interface RenewalTimeOptions {
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /**
   * When the agent obtained the certificate. The CA backdates notBefore (a minute, for clock skew),
   * which for short lifetimes would move the renewal point into the past; the lifetime counts from
   * the later of the two.
   */
  obtainedAt?: Date;
  /** Fraction of the lifetime (0..1). */
  fraction: number;
  /** Spread (fraction of the lifetime) centred on `fraction`. */
  jitter: number;
}

/** A number in [0, 1) derived from the serial. */
export function serialUnit(serial: string): number {
  return crypto.createHash('sha256').update(serial).digest().readUInt32BE(0) / 2 ** 32;
}

/** The effective start of a certificate's lifetime (see {@link RenewalTimeOptions.obtainedAt}). */
export function lifetimeStart(o: { notBefore: Date; notAfter: Date; obtainedAt?: Date }): number {
  const nb = o.notBefore.getTime();
  const got = o.obtainedAt?.getTime();
  return got !== undefined && got > nb && got < o.notAfter.getTime() ? got : nb;
}

/** When the certificate is due for renewal. */
export function renewalTime(o: RenewalTimeOptions): Date {
  const start = lifetimeStart(o);
  const life = o.notAfter.getTime() - start;
  const f = o.fraction + o.jitter * (serialUnit(o.serial) - 0.5);
  return new Date(start + Math.floor(life * f));
}

/** The delay before retry number `failures` (1 = after the first failure): doubling, capped, +-10 % jitter. */
export function retryDelay(failures: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(failures - 1, 40)));
  return Math.max(MIN_RETRY_MS, Math.round(base * (0.9 + 0.2 * random())));
}
