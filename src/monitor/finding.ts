/**
 * What the monitor reports: findings, each with a stable id (for alert dedupe), a level (which
 * expiry threshold it crossed), a severity, an error code from the registry, and the fix.
 */
import { ERRORS, type ErrorCode } from '../core/errors.ts';

/** What a finding is about. */
export const FINDING_KINDS = [
  'expiring', 'expired', 'not-yet-valid', 'revoked-served', 'chain-incomplete', 'chain-untrusted', 'hostname-mismatch',
  'wrong-eku', 'weak-key', 'weak-signature', 'crl-stale', 'crl-expiring', 'crl-invalid', 'client-cert-refused',
  'unreachable', 'unreadable', 'root-retiring-served', 'bundle-missing-root', 'root-retiring', 'root-retired-in-use',
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

/** Severities, least to most severe. `monitor once` exits 5 for warnings and 6 for criticals. */
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** One finding. */
export interface Finding {
  /** Stable across runs for the same problem on the same object (without the level). */
  id: string;
  kind: FindingKind;
  severity: Severity;
  /**
   * How far it has gone: `30d`, `14d`, `7d`, `1d` (the expiry threshold crossed), `expired`, or
   * `present` for kinds without levels. An alert is sent once per level.
   */
  level: string;
  code: ErrorCode;
  /** Where it was seen: `inventory`, `ca`, `file:PATH`, `endpoint:HOST:PORT`, `crl:URL-or-PATH`. */
  source: string;
  /** What it is about: an identity, names, a CRL issuer, a path. */
  subject: string;
  serial?: string;
  issuer?: string;
  notAfter?: Date;
  /** One line for people. */
  message: string;
  /** What to do (usually a command). */
  fix: string;
}

/** Fields a caller gives; the rest is derived. */
export type FindingInput = Omit<Finding, 'id' | 'level' | 'fix'> & { level?: string; fix?: string; /** Default: source|subject|serial. */ key?: string };

/** Builds a finding; the fix defaults to the hint of its code. */
export function makeFinding(f: FindingInput): Finding {
  const { key, ...rest } = f;
  const base = key ?? `${f.source}|${f.serial ?? f.subject}`;
  // Expiring and expired share an id, so crossing from 1d to expired is a new level of one finding.
  const family = f.kind === 'expiring' || f.kind === 'expired' ? 'expiry' : f.kind;
  return { ...rest, id: `${family}|${base}`, level: f.level ?? 'present', fix: f.fix ?? ERRORS[f.code].hint };
}

/** Rank of a severity (higher is worse). */
export const severityRank = (s: Severity): number => SEVERITIES.indexOf(s);

/**
 * Rank of a level for "has it got worse since the last alert": `present` 0, then thresholds by
 * fewer days left (30d < 14d < 7d < 1d), then `expired` above all.
 */
export function levelRank(level: string): number {
  if (level === 'expired') return 1_000_000;
  const m = /^(\d+)d$/.exec(level);
  if (m) return 100_000 - Number(m[1]);
  return 0;
}

/** Sorts findings: most severe first, then soonest expiry, then by source and subject. */
export function sortFindings(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => severityRank(b.severity) - severityRank(a.severity)
    || (a.notAfter?.getTime() ?? Infinity) - (b.notAfter?.getTime() ?? Infinity)
    || a.source.localeCompare(b.source) || a.subject.localeCompare(b.subject));
}

/** Human duration: "3 days", "5 hours", "12 minutes". */
export function humanDuration(ms: number): string {
  const a = Math.abs(ms);
  if (a >= 2 * 86_400_000) return `${Math.floor(a / 86_400_000)} days`;
  if (a >= 2 * 3_600_000) return `${Math.floor(a / 3_600_000)} hours`;
  if (a >= 2 * 60_000) return `${Math.floor(a / 60_000)} minutes`;
  return `${Math.floor(a / 1000)} seconds`;
}
