/**
 * The CA inventory as a monitor source: the newest valid certificate of each identity (clients)
 * or subject (servers) that expires within the thresholds, or expired within the lookback. A
 * certificate that was renewed (a newer valid one exists for the same subject) is history, not a
 * finding. The SQLite store does the grouping itself ({@link ExpiryScanStore}); any other CaStore
 * is read through `listCertificates` and grouped here.
 */
import type { InventoryQueries } from '../ca/store.ts';
import { classifyExpiry, expiryText, renewalFix } from './check-certificate.ts';
import { makeFinding, type Finding } from './finding.ts';
import { renewalScheduleOf } from './renewal-schedule.ts';

const DAY_MS = 86_400_000;
/** Rows read from a store without an expiry scan (PostgreSQL); above this the scan reports it stopped short. */
export const MAX_LISTED_CERTIFICATES = 2_000_000;

/**
 * Rows near expiry that the store's scan gives without notBefore and issuer (the SQLite scan) are
 * looked up for them: the lifetime scales the thresholds of a short-lived certificate, and `mutual
 * serve` renews some certificates itself (see renewal-schedule.ts). In a healthy inventory only
 * failing renewals are near expiry, so they are few; past this many in one scan (a CA in deep
 * trouble), the rest are judged by the thresholds as configured, which errs towards alerting.
 */
export const MAX_RECORD_LOOKUPS = 10_000;

/**
 * One row of the expiry scan: serial (raw bytes), role, identity, subject, notAfter (epoch s),
 * issuer key id, and when the store has them, notBefore (epoch s) and who issued it (the actor).
 * With notBefore, a short lifetime scales the thresholds and self-renewed certificates are judged
 * by their schedule; without it (the SQLite scan today), rows near expiry are looked up
 * ({@link MAX_RECORD_LOOKUPS}).
 */
export type ExpiryRow = [serial: Uint8Array, role: string, identity: string | null, subject: string, notAfter: number, issuerKeyId: string, notBefore?: number, issuedBy?: string];

/** The streaming scan the monitor wants from a store (the SQLite store has it). */
export interface ExpiryScanStore {
  scanExpiry(o: { from: Date; to: Date; now: Date }, cb: (row: ExpiryRow) => void): { total: number; unexpired: number };
}

/** A certificate the monitor saw, for metrics and the JSON report. */
export interface CertificateObservation {
  identity: string;
  issuer: string;
  source: string;
  serial: string;
  notAfter: Date;
}

/** What an inventory scan found. */
export interface InventoryScanResult {
  findings: Finding[];
  /** Per-certificate series (the reported ones, at most `maxSeries`). */
  certificates: CertificateObservation[];
  stats: { total: number; unexpired: number; reported: number; scanMs: number };
}

/** Options of {@link scanInventory}. */
export interface ScanInventoryOptions {
  store: InventoryQueries | (InventoryQueries & ExpiryScanStore);
  now: Date;
  thresholdsDays: readonly number[];
  criticalDays: number;
  expiredLookbackDays: number;
  /** Issuer key id (hex) -> issuer label, for messages and metrics. */
  issuerNames?: ReadonlyMap<string, string>;
  /** Most per-certificate observations returned (default 10,000). */
  maxSeries?: number;
}

const serialHex = (b: Uint8Array): string => Buffer.from(b).toString('hex').replace(/^(00)+(?=.)/, '');

const hasScan = (s: unknown): s is ExpiryScanStore => typeof (s as ExpiryScanStore).scanExpiry === 'function';

/** Scans the inventory for expiry. */
export async function scanInventory(o: ScanInventoryOptions): Promise<InventoryScanResult> {
  const started = performance.now();
  const from = new Date(o.now.getTime() - o.expiredLookbackDays * DAY_MS);
  const to = new Date(o.now.getTime() + Math.max(...o.thresholdsDays) * DAY_MS);
  const findings: Finding[] = [];
  const certificates: CertificateObservation[] = [];
  const maxSeries = o.maxSeries ?? 10_000;
  const report = (row: ExpiryRow): void => {
    const [serialBytes, role, identity, subject, notAfterSec, issuerKeyId, notBeforeSec, issuedBy] = row;
    const notAfter = new Date(notAfterSec * 1000);
    const schedule = notBeforeSec === undefined ? undefined : renewalScheduleOf({ role, issuedBy });
    const expiry = classifyExpiry(notAfter, o.now, o.thresholdsDays, o.criticalDays, { notBefore: notBeforeSec === undefined ? undefined : notBeforeSec * 1000, schedule });
    if (!expiry) return;
    const serial = serialHex(serialBytes);
    const label = identity ?? subject.replace(/^CN=/, '');
    const issuer = o.issuerNames?.get(issuerKeyId) ?? issuerKeyId;
    if (certificates.length < maxSeries) certificates.push({ identity: label, issuer, source: 'inventory', serial, notAfter });
    const names = { dns: role === 'server' && !identity ? [label] : [], ip: [], uri: identity ? [identity] : [] };
    const text = expiryText(expiry, `${role} certificate`, label, notAfter, schedule, () => renewalFix({ isCa: false, names, subject }, expiry.kind === 'expired'));
    findings.push(makeFinding({
      kind: expiry.kind, level: expiry.level, severity: expiry.severity, code: expiry.kind === 'expired' ? 'CERT_EXPIRED' : 'CERT_EXPIRING',
      source: 'inventory', subject: label, serial, issuer, notAfter, key: `inventory|${role}|${label}|${serial}`,
      message: schedule ? text.message : `${text.message} and was not renewed`, fix: text.fix,
    }));
  };
  // Rows near expiry wait for their record (the scan callback is synchronous).
  const lookups: ExpiryRow[] = [];
  const onRow = (row: ExpiryRow): void => {
    if (!classifyExpiry(row[4] * 1000, o.now, o.thresholdsDays, o.criticalDays)) return;
    if (row[6] === undefined && lookups.length < MAX_RECORD_LOOKUPS) lookups.push(row);
    else report(row);
  };
  let counts: { total: number; unexpired: number };
  if (hasScan(o.store)) counts = o.store.scanExpiry({ from, to, now: o.now }, onRow);
  else counts = await scanByListing(o.store, from, to, o.now, onRow);
  for (const row of lookups) {
    const rec = await o.store.getCertificate(serialHex(row[0]), row[5]);
    report(rec ? [row[0], row[1], row[2], row[3], row[4], row[5], Math.floor(rec.notBefore.getTime() / 1000), rec.issuedBy] : row);
  }
  return { findings, certificates, stats: { ...counts, reported: findings.length, scanMs: performance.now() - started } };
}

/** The same grouping over `listCertificates`, for stores without scanExpiry. */
async function scanByListing(store: InventoryQueries, from: Date, to: Date, now: Date, cb: (row: ExpiryRow) => void): Promise<{ total: number; unexpired: number }> {
  const rows = await store.listCertificates({ status: 'valid', notExpiredAt: from, limit: MAX_LISTED_CERTIFICATES });
  const newest = new Map<string, (typeof rows)[number]>();
  for (const r of rows) {
    const key = r.identity ?? `${r.role}:${r.subject}`;
    const prev = newest.get(key);
    if (!prev || r.notAfter > prev.notAfter) newest.set(key, r);
  }
  for (const r of newest.values()) {
    if (r.notAfter >= to) continue;
    cb([Buffer.from(r.serial.length % 2 ? '0' + r.serial : r.serial, 'hex'), r.role, r.identity ?? null, r.subject, Math.floor(r.notAfter.getTime() / 1000), r.issuerKeyId,
      Math.floor(r.notBefore.getTime() / 1000), r.issuedBy]);
  }
  return { total: rows.length, unexpired: rows.filter((r) => r.notAfter > now).length };
}
