/**
 * The monitor's Prometheus metrics, on a registry of its own: per-certificate expiry timestamps
 * (labelled identity, issuer, source, serial) so existing alerting can use them, findings by kind
 * and severity, CRL nextUpdate, endpoint probes, inventory counts, and the last scan's time and
 * duration. Served by `monitor run` on --metrics-listen, or written as a node_exporter textfile.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { writeFileAtomic } from '../io/index.ts';
import { FINDING_KINDS, SEVERITIES } from './finding.ts';
import type { DeliveryResult } from './deliver-alerts.ts';
import type { MonitorReport } from './run-scan.ts';

/** The monitor's metrics. */
export interface MonitorMetrics {
  registry: Registry;
  /** Sets every gauge from a report (series of certificates no longer seen are dropped). */
  update(report: MonitorReport, deliveries?: readonly DeliveryResult[]): void;
  /** Counts a failed scan. */
  scanFailed(): void;
}

const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

/** Makes a fresh registry with the monitor's metrics. */
export function createMonitorMetrics(): MonitorMetrics {
  const registry = new Registry();
  const r = [registry];
  const expiry = new Gauge({ name: 'mutual_certificate_expiry_timestamp_seconds', help: 'notAfter of each watched certificate (inventory: only those within the largest threshold)', labelNames: ['identity', 'issuer', 'source', 'serial'], registers: r });
  const findings = new Gauge({ name: 'mutual_monitor_findings', help: 'Open findings of the last scan, by kind and severity', labelNames: ['kind', 'severity'], registers: r });
  const lastScan = new Gauge({ name: 'mutual_monitor_last_scan_timestamp_seconds', help: 'When the last scan finished', registers: r });
  const duration = new Gauge({ name: 'mutual_monitor_last_scan_duration_seconds', help: 'How long the last scan took', registers: r });
  const failures = new Counter({ name: 'mutual_monitor_scan_failures_total', help: 'Scans that failed as a whole', registers: r });
  const crlNext = new Gauge({ name: 'mutual_crl_next_update_timestamp_seconds', help: 'nextUpdate of each watched CRL', labelNames: ['issuer', 'source'], registers: r });
  const endpointUp = new Gauge({ name: 'mutual_endpoint_up', help: '1 when the TLS handshake with the endpoint finished in the last scan', labelNames: ['endpoint'], registers: r });
  const endpointMs = new Gauge({ name: 'mutual_endpoint_probe_duration_seconds', help: 'Duration of the last probe of each endpoint', labelNames: ['endpoint'], registers: r });
  const inventory = new Gauge({ name: 'mutual_inventory_certificates', help: 'Certificates in the CA inventory (state=total|unexpired|reported)', labelNames: ['state'], registers: r });
  const alerts = new Counter({ name: 'mutual_monitor_alerts_total', help: 'Alert messages by channel and outcome', labelNames: ['channel', 'type', 'outcome'], registers: r });
  return {
    registry,
    update(report, deliveries = []) {
      expiry.reset();
      for (const c of report.certificates) expiry.set({ identity: c.identity, issuer: c.issuer, source: c.source, serial: c.serial }, seconds(c.notAfter));
      findings.reset();
      for (const kind of FINDING_KINDS) for (const severity of SEVERITIES) if (severity !== 'info') findings.set({ kind, severity }, 0);
      for (const f of report.findings) findings.inc({ kind: f.kind, severity: f.severity });
      crlNext.reset();
      for (const c of report.crls) if (c.nextUpdate) crlNext.set({ issuer: c.issuer, source: c.source }, seconds(c.nextUpdate));
      endpointUp.reset();
      endpointMs.reset();
      for (const e of report.endpoints) {
        endpointUp.set({ endpoint: e.address }, e.up ? 1 : 0);
        endpointMs.set({ endpoint: e.address }, e.durationMs / 1000);
      }
      inventory.reset();
      if (report.inventory) {
        inventory.set({ state: 'total' }, report.inventory.total);
        inventory.set({ state: 'unexpired' }, report.inventory.unexpired);
        inventory.set({ state: 'reported' }, report.inventory.reported);
      }
      lastScan.set(seconds(report.startedAt) + Math.round(report.durationMs / 1000));
      duration.set(report.durationMs / 1000);
      for (const d of deliveries) alerts.inc({ channel: d.channel, type: d.type, outcome: d.ok ? 'sent' : 'failed' });
    },
    scanFailed() {
      failures.inc();
    },
  };
}

/** Writes the metrics as a node_exporter textfile (atomically: node_exporter never reads half a file). */
export async function writeMetricsTextfile(metrics: MonitorMetrics, file: string): Promise<void> {
  writeFileAtomic(file, await metrics.registry.metrics());
}

/** Serves GET /metrics on host:port; returns the URL and a close function. */
export async function serveMetrics(metrics: MonitorMetrics, host: string, port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
      return;
    }
    try {
      const body = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body);
    } catch {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
    }
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
