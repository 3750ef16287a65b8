/**
 * The checks every certificate the monitor sees goes through, wherever it came from: expiry
 * against the thresholds, not yet valid, weak key, weak signature.
 */
import { describeSpki } from '../core/algorithms.ts';
import { certificateIdentity, type CertificateInfo } from '../core/certificate.ts';
import { isMutualError } from '../core/errors.ts';
import { OID } from '../core/oids.ts';
import { humanDuration, makeFinding, type Finding, type Severity } from './finding.ts';
import { RENEWAL_CRITICAL_FRACTION, RENEWAL_OVERDUE_FRACTION, type RenewalSchedule } from './renewal-schedule.ts';

const DAY_MS = 86_400_000;
/**
 * The lifetime the day thresholds are written for (mutual's 90-day leaf certificates). A
 * certificate that lives shorter gets them scaled by lifetime / this: a 24-hour certificate's 7-day
 * critical threshold becomes 1.9 hours, its 30-day one 8 hours (a third of its life, as 30 days is
 * of 90). Longer lifetimes keep the thresholds as configured.
 */
export const REFERENCE_LIFETIME_DAYS = 90;

/** Signature algorithms that no longer protect anything (RFC 6194: SHA-1 collisions; MD5). */
export const WEAK_SIGNATURE_OIDS: ReadonlyMap<string, string> = new Map([
  [OID.sha1WithRSAEncryption, 'sha1WithRSAEncryption'],
  [OID.ecdsaWithSHA1, 'ecdsa-with-SHA1'],
  ['1.2.840.113549.1.1.4', 'md5WithRSAEncryption'],
  ['1.2.840.10040.4.3', 'dsa-with-SHA1'],
]);

/** Where a certificate stands against the thresholds. */
export interface ExpiryClass {
  kind: 'expiring' | 'expired';
  /**
   * `30d`, `14d`, ... (the threshold crossed; scaled for a short-lived certificate, the level keeps
   * the name of the threshold it stands for), `renewal-overdue` (a certificate with a renewal
   * schedule that was not renewed in time) or `expired`.
   */
  level: string;
  severity: Severity;
  /** notAfter - now, ms (negative once expired). */
  leftMs: number;
}

/** What else {@link classifyExpiry} knows of a certificate. */
export interface ExpiryContext {
  /** Its notBefore: with notAfter, its lifetime, which scales the thresholds when shorter than {@link REFERENCE_LIFETIME_DAYS}. */
  notBefore?: Date | number;
  /** Set when something renews it on its own (needs notBefore): judged by that schedule instead of the thresholds. */
  schedule?: RenewalSchedule;
}

const ms = (d: Date | number): number => (typeof d === 'number' ? d : d.getTime());

/**
 * Classifies an expiry: undefined when further away than the largest threshold; else the smallest
 * threshold it is within. `thresholdsDays` is sorted largest first (the config does that). With a
 * notBefore, a short lifetime scales the thresholds; with a schedule too, the certificate is only
 * reported once its renewal is overdue: {@link RENEWAL_OVERDUE_FRACTION} of the time it had left at
 * the renewal moment has passed (warning), critical in the last {@link RENEWAL_CRITICAL_FRACTION}.
 */
export function classifyExpiry(notAfter: Date | number, now: Date, thresholdsDays: readonly number[], criticalDays: number, ctx: ExpiryContext = {}): ExpiryClass | undefined {
  const leftMs = ms(notAfter) - now.getTime();
  if (leftMs <= 0) return { kind: 'expired', level: 'expired', severity: 'critical', leftMs };
  const lifetimeMs = ctx.notBefore === undefined ? undefined : ms(notAfter) - ms(ctx.notBefore);
  if (lifetimeMs !== undefined && lifetimeMs > 0 && ctx.schedule) {
    // The time the certificate has left when it is due for renewal; judged as a share of it.
    const windowMs = (1 - ctx.schedule.renewAtFraction) * lifetimeMs;
    if (leftMs > (1 - RENEWAL_OVERDUE_FRACTION) * windowMs) return undefined;
    return { kind: 'expiring', level: 'renewal-overdue', severity: leftMs <= RENEWAL_CRITICAL_FRACTION * windowMs ? 'critical' : 'warning', leftMs };
  }
  const scale = lifetimeMs !== undefined && lifetimeMs > 0 ? Math.min(1, lifetimeMs / (REFERENCE_LIFETIME_DAYS * DAY_MS)) : 1;
  const unit = DAY_MS * scale;
  let level: number | undefined;
  for (const t of thresholdsDays) if (leftMs <= t * unit) level = level === undefined ? t : Math.min(level, t);
  if (level === undefined) return undefined;
  return { kind: 'expiring', level: `${level}d`, severity: leftMs <= criticalDays * unit ? 'critical' : 'warning', leftMs };
}

/** The name people know a certificate by: its SPIFFE identity, else its first DNS name or IP, else its subject. */
export function certificateLabel(info: CertificateInfo): string {
  return certificateIdentity(info) ?? info.names.dns[0] ?? info.names.ip[0] ?? info.commonName ?? info.subject;
}

/** Short issuer label for metrics and tables: the issuer's CN, else the whole issuer name. */
export function issuerLabel(info: CertificateInfo): string {
  const m = /(?:^|, )CN=([^,]+)/.exec(info.issuer);
  return m ? m[1] : info.issuer;
}

/** The fix for an expiring or expired certificate, as a command. */
export function renewalFix(info: Pick<CertificateInfo, 'isCa' | 'names' | 'subject'>, expired: boolean): string {
  if (info.isCa) {
    return /Root/i.test(info.subject)
      ? 'Plan a new root (a ceremony: `mutual init` with the offline folder) and distribute it before this one expires.'
      : 'Re-sign the intermediate with the offline root: `mutual intermediate csr --role server|client --out ca.csr`, then `mutual offline sign-intermediate ca.csr --role server|client --out ca.pem` and `mutual intermediate install ca.pem --role server|client`.';
  }
  const identity = info.names.uri.find((u) => u.startsWith('spiffe://'));
  const renew = expired ? '' : 'renew on the host that holds it: `mutual ca renew cert.pem key.pem --ca-url URL` (or let `mutual agent` do it); or ';
  if (identity) return `${renew}issue a new one: \`mutual issue client ${identity} --out DIR\`.`;
  const names = [...info.names.dns, ...info.names.ip.map((ip) => `--ip ${ip}`)].join(' ') || 'NAME';
  return `${renew}issue a new one: \`mutual issue server ${names} --out DIR\` and install fullchain.pem.`;
}

/** Context of {@link checkCertificate}. */
export interface CheckCertificateOptions {
  source: string;
  now: Date;
  thresholdsDays: readonly number[];
  criticalDays: number;
  /** Default: {@link certificateLabel}. */
  subject?: string;
  /** Severity of "not yet valid" (default warning; critical where it is being served). */
  notYetValidSeverity?: Severity;
  /** Set when something renews this certificate on its own (the inventory says so): judged by that schedule. */
  schedule?: RenewalSchedule;
}

/** The finding's message and fix for an expiry class (shared by every source). */
export function expiryText(c: ExpiryClass, what: string, subject: string, notAfter: Date, schedule: RenewalSchedule | undefined, fallbackFix: () => string): { message: string; fix: string } {
  const at = notAfter.toISOString();
  if (c.kind === 'expired') return { message: `The ${what} of ${subject} expired ${humanDuration(-c.leftMs)} ago (${at})`, fix: schedule?.fix ?? fallbackFix() };
  if (c.level === 'renewal-overdue' && schedule) {
    return { message: `The ${schedule.what} (${subject}) was not renewed on schedule (at ${Math.round(schedule.renewAtFraction * 100)}% of its life) and expires in ${humanDuration(c.leftMs)} (${at})`, fix: schedule.fix };
  }
  return { message: `The ${what} of ${subject} expires in ${humanDuration(c.leftMs)} (${at})`, fix: fallbackFix() };
}

/** Expiry, not-yet-valid, weak key and weak signature findings for one certificate. */
export function checkCertificate(info: CertificateInfo, o: CheckCertificateOptions): Finding[] {
  const out: Finding[] = [];
  const subject = o.subject ?? certificateLabel(info);
  const base = { source: o.source, subject, serial: info.serial, issuer: issuerLabel(info), notAfter: info.notAfter };
  const what = info.isCa ? 'CA certificate' : 'certificate';
  const expiry = classifyExpiry(info.notAfter, o.now, o.thresholdsDays, o.criticalDays, { notBefore: info.notBefore, schedule: o.schedule });
  if (expiry) {
    const text = expiryText(expiry, what, subject, info.notAfter, o.schedule, () => renewalFix(info, expiry.kind === 'expired'));
    out.push(makeFinding({ ...base, kind: expiry.kind, level: expiry.level, severity: expiry.severity, code: expiry.kind === 'expired' ? 'CERT_EXPIRED' : 'CERT_EXPIRING', ...text }));
  }
  if (o.now < info.notBefore) {
    out.push(makeFinding({ ...base, kind: 'not-yet-valid', severity: o.notYetValidSeverity ?? 'warning', code: 'CERT_NOT_YET_VALID',
      message: `The ${what} of ${subject} is not valid until ${info.notBefore.toISOString()} (in ${humanDuration(info.notBefore.getTime() - o.now.getTime())})`,
      fix: 'Check the clocks of this host and of the CA (`timedatectl`); a certificate issued by a CA whose clock runs ahead is refused until then.' }));
  }
  try {
    describeSpki(info.spki);
  } catch (e) {
    if (!isMutualError(e, 'KEY_WEAK')) throw e;
    out.push(makeFinding({ ...base, kind: 'weak-key', severity: 'warning', code: 'CERT_WEAK', message: `The ${what} of ${subject} has a weak key: ${e.fields.detail}` }));
  }
  // RSASSA-PSS is judged by its parameters: with SHA-1 (or a mask hash other than its own) the
  // SDK and the gateway refuse it (readSignature), so the monitor says so before they do.
  const weakSig = WEAK_SIGNATURE_OIDS.get(info.signatureOid)
    ?? (info.signatureOid === OID.rsassaPss && !info.signatureScheme ? 'RSASSA-PSS with SHA-1 or a mask hash other than its own' : undefined);
  // A trust anchor's self-signature is never checked by anyone, so SHA-1 on a root is harmless.
  const selfSigned = info.issuerName.equals(info.subjectName);
  if (weakSig && !selfSigned) {
    out.push(makeFinding({ ...base, kind: 'weak-signature', severity: 'warning', code: 'CERT_WEAK', message: `The ${what} of ${subject} is signed with ${weakSig}` }));
  }
  return out;
}

/**
 * Judges a certificate again by its renewal schedule once the inventory says something renews it on
 * its own (a served certificate is judged by the thresholds first, before its record is read): its
 * expiry findings under `o.source` are replaced. Returns the new list.
 */
export function applyRenewalSchedule(findings: readonly Finding[], info: CertificateInfo, o: CheckCertificateOptions & { schedule: RenewalSchedule }): Finding[] {
  const isExpiry = (f: Finding): boolean => (f.kind === 'expiring' || f.kind === 'expired') && f.source === o.source && f.serial === info.serial;
  return [...findings.filter((f) => !isExpiry(f)), ...checkCertificate(info, o).filter(isExpiry)];
}
