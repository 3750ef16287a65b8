/**
 * The CA inventory as a monitor source: the newest valid certificate of each identity (clients)
 * or subject (servers) that expires within the thresholds, or expired within the lookback. A
 * certificate that was renewed (a newer valid one exists for the same subject) is history, not a
 * finding. The SQLite store does the grouping itself ({@link ExpiryScanStore}); any other CaStore
 * is read through `listCertificates` and grouped here.
 */
import type { CaStore } from '../ca/store.ts';
import { classifyExpiry, renewalFix } from './check-certificate.ts';
import { humanDuration, makeFinding, type Finding } from './finding.ts';

const DAY_MS = 86_400_000;
/** Rows read from a store without an expiry scan (PostgreSQL); above this the scan reports it stopped short. */
export const MAX_LISTED_CERTIFICATES = 2_000_000;

/** One row of the expiry scan: serial (raw bytes), role, identity, subject, notAfter (epoch s), issuer key id. */
export type ExpiryRow = [serial: Uint8Array, role: string, identity: string | null, subject: string, notAfter: number, issuerKeyId: string];

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
  store: CaStore | (CaStore & ExpiryScanStore);
  now: Date;
  thresholdsDays: readonly number[];
  criticalDays: number;
  expiredLookbackDays: number;
  /** Issuer key id (hex) -> issuer label, for messages and metrics. */
  issuerNames?: ReadonlyMap<string, string>;
  /** Most per-certificate observations returned (default 10,000). */
  maxSeries?: number;
}

const hasScan = (s: unknown): s is ExpiryScanStore => typeof (s as ExpiryScanStore).scanExpiry === 'function';

/** Scans the inventory for expiry. */
export async function scanInventory(o: ScanInventoryOptions): Promise<InventoryScanResult> {
  const started = performance.now();
  const from = new Date(o.now.getTime() - o.expiredLookbackDays * DAY_MS);
  const to = new Date(o.now.getTime() + Math.max(...o.thresholdsDays) * DAY_MS);
  const findings: Finding[] = [];
  const certificates: CertificateObservation[] = [];
  const maxSeries = o.maxSeries ?? 10_000;
  const onRow = (row: ExpiryRow): void => {
    const [serialBytes, role, identity, subject, notAfterSec, issuerKeyId] = row;
    const notAfter = new Date(notAfterSec * 1000);
    const expiry = classifyExpiry(notAfter, o.now, o.thresholdsDays, o.criticalDays);
    if (!expiry) return;
    const serial = Buffer.from(serialBytes).toString('hex').replace(/^(00)+(?=.)/, '');
    const label = identity ?? subject.replace(/^CN=/, '');
    const issuer = o.issuerNames?.get(issuerKeyId) ?? issuerKeyId;
    if (certificates.length < maxSeries) certificates.push({ identity: label, issuer, source: 'inventory', serial, notAfter });
    const names = { dns: role === 'server' && !identity ? [label] : [], ip: [], uri: identity ? [identity] : [] };
    const when = expiry.kind === 'expired' ? `expired ${humanDuration(-expiry.leftMs)} ago` : `expires in ${humanDuration(expiry.leftMs)}`;
    findings.push(makeFinding({
      kind: expiry.kind, level: expiry.level, severity: expiry.severity, code: expiry.kind === 'expired' ? 'CERT_EXPIRED' : 'CERT_EXPIRING',
      source: 'inventory', subject: label, serial, issuer, notAfter, key: `inventory|${role}|${label}|${serial}`,
      message: `The ${role} certificate of ${label} ${when} (${notAfter.toISOString()}) and was not renewed`,
      fix: renewalFix({ isCa: false, names, subject }, expiry.kind === 'expired'),
    }));
  };
  let counts: { total: number; unexpired: number };
  if (hasScan(o.store)) counts = o.store.scanExpiry({ from, to, now: o.now }, onRow);
  else counts = await scanByListing(o.store, from, to, o.now, onRow);
  return { findings, certificates, stats: { ...counts, reported: findings.length, scanMs: performance.now() - started } };
}

/** The same grouping over `listCertificates`, for stores without scanExpiry. */
async function scanByListing(store: CaStore, from: Date, to: Date, now: Date, cb: (row: ExpiryRow) => void): Promise<{ total: number; unexpired: number }> {
  const rows = await store.listCertificates({ status: 'valid', notExpiredAt: from, limit: MAX_LISTED_CERTIFICATES });
  const newest = new Map<string, (typeof rows)[number]>();
  for (const r of rows) {
    const key = r.identity ?? `${r.role}:${r.subject}`;
    const prev = newest.get(key);
    if (!prev || r.notAfter > prev.notAfter) newest.set(key, r);
  }
  for (const r of newest.values()) {
    if (r.notAfter >= to) continue;
    cb([Buffer.from(r.serial.length % 2 ? '0' + r.serial : r.serial, 'hex'), r.role, r.identity ?? null, r.subject, Math.floor(r.notAfter.getTime() / 1000), r.issuerKeyId]);
  }
  return { total: rows.length, unexpired: rows.filter((r) => r.notAfter > now).length };
}
