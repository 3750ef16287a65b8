/**
 * One monitor scan over every configured source: the CA's own certificates and CRLs, its
 * inventory, CRLs elsewhere, certificate files, and live endpoints. Each source's failures are
 * findings; nothing a source does stops the others.
 */
import fs from 'node:fs';
import { homeLayout } from '../ca/home.ts';
import type { CaStore, InventoryQueries } from '../ca/store.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { parseDuration } from '../core/duration.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readCertificateDers } from '../core/pem.ts';
import { applyRenewalSchedule, certificateLabel, checkCertificate, issuerLabel } from './check-certificate.ts';
import { makeFinding, severityRank, sortFindings, type Finding, type Severity } from './finding.ts';
import { splitAddress, type MonitorConfig } from './monitor-config.ts';
import { renewalScheduleOf } from './renewal-schedule.ts';
import type { TlsProbeOptions, TlsProbeResult } from './probe-tls.ts';
import { crlFromFile, crlFromUrl, scanCrls, type CrlInput, type CrlObservation } from './scan-crls.ts';
import { scanEndpoints, readPemFile, type EndpointObservation, type EndpointTarget } from './scan-endpoints.ts';
import { MAX_CERT_FILE_BYTES, MAX_PEM_BLOCKS, scanFiles } from './scan-files.ts';
import { loadRollover, rolloverFindings } from './scan-rollover.ts';
import { scanInventory, type CertificateObservation, type InventoryScanResult } from './scan-inventory.ts';

/** What one scan found. */
export interface MonitorReport {
  startedAt: Date;
  durationMs: number;
  findings: Finding[];
  /** Certificates with a per-certificate expiry series. */
  certificates: CertificateObservation[];
  crls: CrlObservation[];
  endpoints: EndpointObservation[];
  inventory?: InventoryScanResult['stats'];
  /** Certificate files read. */
  files: number;
  counts: Record<Severity, number>;
}

/** Options of {@link runScan}. */
export interface RunScanOptions {
  /** Scan time (tests freeze it). Default: now. */
  now?: Date;
  /** The inventory store; default: opened from sources.inventory. */
  store?: InventoryQueries;
  /** The TLS prober (benchmarks wrap it). */
  probe?: (o: TlsProbeOptions) => Promise<TlsProbeResult>;
}

/** Reads every certificate of a PEM bundle or DER file (trust anchors). Throws PEM_MALFORMED for neither. */
export function readBundle(file: string): Buffer[] {
  return readCertificateDers(fs.readFileSync(file), { maxBytes: MAX_CERT_FILE_BYTES, maxBlocks: MAX_PEM_BLOCKS });
}

interface CaMaterial {
  certs: CertificateInfo[];
  anchors: Buffer[];
  intermediates: Buffer[];
  issuerNames: Map<string, string>;
  crlFiles: string[];
}

/** The CA's certificates and CRL files from its state folder; unreadable ones become findings. */
function loadCaMaterial(home: string, findings: Finding[]): CaMaterial {
  const l = homeLayout(home);
  const m: CaMaterial = { certs: [], anchors: [], intermediates: [], issuerNames: new Map(), crlFiles: [] };
  for (const [file, kind] of [[l.rootCert, 'root'], [l.serverCaCert, 'intermediate'], [l.clientCaCert, 'intermediate']] as const) {
    try {
      const der = readBundle(file)[0];
      if (!der) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: 'no certificate in the file' });
      const info = parseCertificate(der);
      m.certs.push(info);
      (kind === 'root' ? m.anchors : m.intermediates).push(der);
      if (info.subjectKeyId) m.issuerNames.set(info.subjectKeyId.toString('hex'), info.commonName ?? info.subject);
    } catch (e) {
      findings.push(makeFinding({ kind: 'unreadable', severity: 'warning', code: isMutualError(e) ? e.code : 'MONITOR_SOURCE_UNREADABLE', source: 'ca', subject: file,
        message: `${file}: ${(e as Error).message}`, key: `ca:${file}` }));
    }
  }
  for (const which of ['root', 'server', 'client']) {
    const f = `${l.caDir}/${which}.crl`;
    if (fs.existsSync(f)) m.crlFiles.push(f);
  }
  return m;
}

async function openInventory(inv: NonNullable<MonitorConfig['sources']['inventory']>): Promise<CaStore> {
  // The one composition root: a database named here, else the CA's own setting (config.yaml's
  // database), else its SQLite file, as for every other command.
  const { openCaStore, resolveStoreLocation } = await import('../ca/open-ca-store.ts');
  const where = { home: inv.home, databaseUrl: inv.databaseUrl, databaseSchema: inv.databaseSchema };
  const at = resolveStoreLocation(where);
  // Opening a missing file would create an empty inventory and report it healthy.
  if (at.kind === 'sqlite' && !fs.existsSync(at.path)) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `no inventory at ${at.path}` });
  return openCaStore(where);
}

/** Runs one scan. */
export async function runScan(config: MonitorConfig, o: RunScanOptions = {}): Promise<MonitorReport> {
  const startedAt = o.now ?? new Date();
  const t0 = performance.now();
  const now = startedAt;
  const findings: Finding[] = [];
  const certificates: CertificateObservation[] = [];
  const common = { now, criticalDays: config.criticalDays };
  const inv = config.sources.inventory;
  const seen = new Set<string>();

  // The CA itself.
  let ca: CaMaterial | undefined;
  if (inv?.home) {
    ca = loadCaMaterial(inv.home, findings);
    for (const info of ca.certs) {
      seen.add(info.fingerprint);
      certificates.push({ identity: certificateLabel(info), issuer: issuerLabel(info), source: 'ca', serial: info.serial, notAfter: info.notAfter });
      findings.push(...checkCertificate(info, { ...common, source: 'ca', thresholdsDays: config.caThresholdsDays }));
    }
  }

  // CRLs: the CA's own files, then the configured ones.
  const crlInputs: CrlInput[] = [...(ca?.crlFiles ?? []).map(crlFromFile)];
  for (const c of config.sources.crls) {
    crlInputs.push(c.url ? crlFromUrl(c.url, { timeoutMs: parseDuration(c.timeout), ca: readPemFile(c.ca) }) : crlFromFile(c.file!));
  }
  const crlScan = await scanCrls({ inputs: crlInputs, caCertificates: ca?.certs ?? [], now, warnFraction: config.crlWarnFraction });
  findings.push(...crlScan.findings);

  // The inventory.
  let store: InventoryQueries | undefined = o.store;
  /** The store opened here, closed here; one passed in stays open. */
  let own: CaStore | undefined;
  let inventory: InventoryScanResult['stats'] | undefined;
  if (!store && inv !== undefined) {
    try {
      store = own = await openInventory(inv!);
    } catch (e) {
      findings.push(makeFinding({ kind: 'unreadable', severity: 'warning', code: isMutualError(e) ? e.code : 'MONITOR_SOURCE_UNREADABLE', source: 'inventory',
        subject: inv!.home ?? 'database', message: `The inventory could not be opened: ${(e as Error).message}` }));
    }
  }
  try {
    if (store) {
      const r = await scanInventory({
        store, now, thresholdsDays: config.thresholdsDays, criticalDays: config.criticalDays, expiredLookbackDays: config.expiredLookbackDays,
        issuerNames: ca?.issuerNames, maxSeries: config.metrics.maxInventorySeries,
      });
      findings.push(...r.findings);
      certificates.push(...r.certificates);
      inventory = r.stats;
    }

    // Files on this host.
    const files = scanFiles({ sources: config.sources.files, now, thresholdsDays: config.thresholdsDays, caThresholdsDays: config.caThresholdsDays, criticalDays: config.criticalDays, seen });
    findings.push(...files.findings);
    certificates.push(...files.certificates);

    // Endpoints.
    const targets: EndpointTarget[] = [];
    for (const e of config.sources.endpoints) {
      const source = `endpoint:${e.address}`;
      try {
        const { host, port } = splitAddress(e.address);
        targets.push({
          address: e.address, host, port, servername: e.servername ?? host, anchors: e.ca ? readBundle(e.ca) : (ca?.anchors ?? []), intermediates: ca?.intermediates,
          cert: readPemFile(e.cert), key: readPemFile(e.key), timeoutMs: parseDuration(e.timeout),
        });
      } catch (err) {
        findings.push(makeFinding({ kind: 'unreadable', severity: 'warning', code: isMutualError(err) ? err.code : 'MONITOR_SOURCE_UNREADABLE', source, subject: e.address,
          message: `${e.address}: its ca, cert or key file could not be read: ${(err as Error).message}` }));
      }
    }
    const ep = await scanEndpoints({
      targets, concurrency: config.concurrency, now, thresholdsDays: config.thresholdsDays, caThresholdsDays: config.caThresholdsDays, criticalDays: config.criticalDays,
      revoked: (leaf) => crlScan.index.lookup(leaf), probe: o.probe,
    });
    let epFindings = ep.findings;
    certificates.push(...ep.certificates);
    // Revoked in the inventory but served (the CRL may not be reachable from here, or not yet rebuilt);
    // or renewed by `mutual serve` itself: judged by its schedule.
    if (store) {
      for (const c of ep.certificates) {
        const rec = await store.getCertificate(c.serial);
        const schedule = rec && renewalScheduleOf(rec);
        if (rec && schedule) {
          epFindings = applyRenewalSchedule(epFindings, parseCertificate(rec.der), {
            source: c.source, now, thresholdsDays: config.thresholdsDays, criticalDays: config.criticalDays, subject: c.identity, notYetValidSeverity: 'critical', schedule,
          });
        }
        if (rec?.status !== 'revoked') continue;
        findings.push(makeFinding({ kind: 'revoked-served', severity: 'critical', code: 'CERT_REVOKED_SERVED', source: c.source, subject: c.identity, serial: c.serial, issuer: c.issuer, notAfter: c.notAfter,
          message: `The server still serves certificate ${c.serial} of ${c.identity}, revoked on ${rec.revokedAt?.toISOString()} (${rec.reason ?? 'unspecified'}, in the inventory)`,
          fix: `Install the replacement and reload the server: \`mutual issue server ${rec.names.dns.join(' ') || c.identity} --out DIR\`, then point the server at DIR/fullchain.pem.` }));
      }
    }
    findings.push(...epFindings);
    // A root rollover: endpoints and files judged against the CA's roots.
    const rollover = await loadRollover(config, findings);
    if (rollover) findings.push(...rolloverFindings({ view: rollover, now, endpoints: ep.served, files: files.read }));
    const unique = new Map<string, Finding>();
    for (const f of findings) {
      const prev = unique.get(f.id);
      if (!prev || severityRank(f.severity) > severityRank(prev.severity)) unique.set(f.id, f);
    }
    const all = sortFindings([...unique.values()]);
    const counts: Record<Severity, number> = { info: 0, warning: 0, critical: 0 };
    for (const f of all) counts[f.severity]++;
    return {
      startedAt, durationMs: performance.now() - t0, findings: all, certificates, crls: crlScan.crls, endpoints: ep.endpoints, inventory, files: files.files, counts,
    };
  } finally {
    await own?.close();
  }
}
