/**
 * The checks every certificate the monitor sees goes through, wherever it came from: expiry
 * against the thresholds, not yet valid, weak key, weak signature.
 */
import { describeSpki } from '../core/algorithms.ts';
import { certificateIdentity, type CertificateInfo } from '../core/certificate.ts';
import { isMutualError } from '../core/errors.ts';
import { OID } from '../core/oids.ts';
import { humanDuration, makeFinding, type Finding, type Severity } from './finding.ts';

const DAY_MS = 86_400_000;

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
  /** `30d`, `14d`, ... or `expired`. */
  level: string;
  severity: Severity;
  /** notAfter - now, ms (negative once expired). */
  leftMs: number;
}

/**
 * Classifies an expiry: undefined when further away than the largest threshold; else the smallest
 * threshold it is within. `thresholdsDays` is sorted largest first (the config does that).
 */
export function classifyExpiry(notAfter: Date | number, now: Date, thresholdsDays: readonly number[], criticalDays: number): ExpiryClass | undefined {
  const leftMs = (typeof notAfter === 'number' ? notAfter : notAfter.getTime()) - now.getTime();
  if (leftMs <= 0) return { kind: 'expired', level: 'expired', severity: 'critical', leftMs };
  let level: number | undefined;
  for (const t of thresholdsDays) if (leftMs <= t * DAY_MS) level = level === undefined ? t : Math.min(level, t);
  if (level === undefined) return undefined;
  return { kind: 'expiring', level: `${level}d`, severity: leftMs <= criticalDays * DAY_MS ? 'critical' : 'warning', leftMs };
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
}

/** Expiry, not-yet-valid, weak key and weak signature findings for one certificate. */
export function checkCertificate(info: CertificateInfo, o: CheckCertificateOptions): Finding[] {
  const out: Finding[] = [];
  const subject = o.subject ?? certificateLabel(info);
  const base = { source: o.source, subject, serial: info.serial, issuer: issuerLabel(info), notAfter: info.notAfter };
  const what = info.isCa ? 'CA certificate' : 'certificate';
  const expiry = classifyExpiry(info.notAfter, o.now, o.thresholdsDays, o.criticalDays);
  if (expiry) {
    const when = expiry.kind === 'expired'
      ? `expired ${humanDuration(-expiry.leftMs)} ago (${info.notAfter.toISOString()})`
      : `expires in ${humanDuration(expiry.leftMs)} (${info.notAfter.toISOString()})`;
    out.push(makeFinding({ ...base, kind: expiry.kind, level: expiry.level, severity: expiry.severity, code: expiry.kind === 'expired' ? 'CERT_EXPIRED' : 'CERT_EXPIRING',
      message: `The ${what} of ${subject} ${when}`, fix: renewalFix(info, expiry.kind === 'expired') }));
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
  const weakSig = WEAK_SIGNATURE_OIDS.get(info.signatureOid);
  // A trust anchor's self-signature is never checked by anyone, so SHA-1 on a root is harmless.
  const selfSigned = info.issuerName.equals(info.subjectName);
  if (weakSig && !selfSigned) {
    out.push(makeFinding({ ...base, kind: 'weak-signature', severity: 'warning', code: 'CERT_WEAK', message: `The ${what} of ${subject} is signed with ${weakSig}` }));
  }
  return out;
}
