/**
 * Live endpoints as a monitor source: each one probed over TLS (with a client certificate for
 * mTLS endpoints), a bounded number at a time, its chain judged by analyzeChain. An endpoint that
 * hangs, resets or refuses is a finding; the scan carries on.
 */
import fs from 'node:fs';
import type { CertificateInfo } from '../core/certificate.ts';
import { analyzeChain } from './analyze-chain.ts';
import { certificateLabel, issuerLabel } from './check-certificate.ts';
import { makeFinding, type Finding } from './finding.ts';
import { probeTls, type TlsProbeOptions, type TlsProbeResult } from './probe-tls.ts';
import type { CertificateObservation } from './scan-inventory.ts';

/** One endpoint to probe. */
export interface EndpointTarget {
  /** host:port as configured. */
  address: string;
  host: string;
  port: number;
  /** SNI and the name the certificate must carry. */
  servername: string;
  /** Trust anchors (DER); empty: trust is not judged. */
  anchors: readonly Buffer[];
  intermediates?: readonly Buffer[];
  /** Client certificate and key (PEM) for mTLS endpoints. */
  cert?: string;
  key?: string;
  timeoutMs: number;
}

/** How one probe went, for metrics and the report. */
export interface EndpointObservation {
  address: string;
  /** The TLS handshake finished. */
  up: boolean;
  durationMs: number;
  protocol?: string;
  error?: string;
  serial?: string;
}

/** Options of {@link scanEndpoints}. */
export interface ScanEndpointsOptions {
  targets: readonly EndpointTarget[];
  concurrency: number;
  now: Date;
  thresholdsDays: readonly number[];
  caThresholdsDays: readonly number[];
  criticalDays: number;
  revoked?: (leaf: CertificateInfo) => { revokedAt?: Date; via: string } | undefined;
  /** The prober (tests and benchmarks may wrap it). */
  probe?: (o: TlsProbeOptions) => Promise<TlsProbeResult>;
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Reads a PEM file for an endpoint; undefined when not configured. */
export function readPemFile(file: string | undefined): string | undefined {
  return file ? fs.readFileSync(file, 'utf8') : undefined;
}

/** Probes the endpoints and judges what they serve. */
export async function scanEndpoints(o: ScanEndpointsOptions): Promise<{ findings: Finding[]; certificates: CertificateObservation[]; endpoints: EndpointObservation[]; served: { address: string; chain: readonly Buffer[] }[] }> {
  const probe = o.probe ?? probeTls;
  const findings: Finding[] = [];
  const certificates: CertificateObservation[] = [];
  /** The chain each endpoint sent (leaf first), for the root rollover's findings. */
  const served: { address: string; chain: readonly Buffer[] }[] = [];
  const endpoints = await mapLimit(o.targets, o.concurrency, async (t): Promise<EndpointObservation> => {
    const source = `endpoint:${t.address}`;
    const opts: TlsProbeOptions = { host: t.host, port: t.port, servername: t.servername, cert: t.cert, key: t.key, timeoutMs: t.timeoutMs };
    let r = await probe(opts);
    const refusedUs = Boolean(t.cert) && (r.verdict === 'refused' || (!r.handshake && r.error?.alert !== undefined && r.connected));
    if (refusedUs) {
      findings.push(makeFinding({ kind: 'client-cert-refused', severity: 'critical', code: 'CLIENT_CERT_REFUSED', source, subject: t.address,
        message: `${t.address} refused the monitor's client certificate${r.error?.alert ? ` (TLS alert ${r.error.alert})` : ''}`,
        fix: `Run \`mutual doctor ${t.address} --cert CERT --key KEY\` for the reason and the fix.` }));
      // TLS 1.2 ends the handshake before the chain is seen: look again without a certificate.
      if (!r.handshake) r = await probe({ ...opts, cert: undefined, key: undefined });
    }
    if (!r.handshake) {
      const why = r.error ? `${r.error.timeout ? 'timed out' : r.error.code}${r.error.alert ? ` (TLS alert ${r.error.alert})` : ''} during ${r.error.stage === 'tcp' ? 'the TCP connect' : 'the TLS handshake'}: ${r.error.message}` : 'closed';
      findings.push(makeFinding({ kind: 'unreachable', severity: 'warning', code: 'MONITOR_ENDPOINT_UNREACHABLE', source, subject: t.address,
        message: `${t.address}: ${why}` }));
      return { address: t.address, up: false, durationMs: r.totalMs, error: r.error?.code ?? 'closed' };
    }
    const a = analyzeChain({
      sent: r.sentChain, anchors: t.anchors, intermediates: t.intermediates, now: o.now, name: t.servername, purpose: 'server', source,
      thresholdsDays: o.thresholdsDays, caThresholdsDays: o.caThresholdsDays, criticalDays: o.criticalDays, revoked: o.revoked,
    });
    findings.push(...a.findings);
    served.push({ address: t.address, chain: r.sentChain });
    if (a.leaf) certificates.push({ identity: certificateLabel(a.leaf), issuer: issuerLabel(a.leaf), source, serial: a.leaf.serial, notAfter: a.leaf.notAfter });
    return { address: t.address, up: true, durationMs: r.totalMs, protocol: r.protocol, serial: a.leaf?.serial };
  });
  return { findings, certificates, endpoints, served };
}
