/**
 * `mutual doctor HOST:PORT`: connects, records what happened in the handshake, and explains it in
 * one screen. It connects once without a client certificate (what the server sends, and whether it
 * insists on a client certificate) and, when one is given, once with it (whether the server takes
 * it). The server's chain is judged by analyzeChain; a refused client certificate is explained by
 * the alert the server sent (or nginx's 400 page) together with what we can see of the
 * certificate ourselves: expired, revoked (CRL or the CA's inventory), from a CA the server does
 * not trust, or a server certificate offered as a client certificate. Every problem has its fix.
 */
import tls from 'node:tls';
import type { InventoryQueries } from '../ca/store.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { OID } from '../core/oids.ts';
import { readCertificateDers } from '../core/pem.ts';
import { revocationUrls } from '../core/cert-urls.ts';
import { analyzeChain, type ChainAnalysis } from './analyze-chain.ts';
import { applyRenewalSchedule, certificateLabel, checkCertificate, issuerLabel } from './check-certificate.ts';
import { humanDuration, makeFinding, severityRank, sortFindings, type Finding } from './finding.ts';
import { DEFAULT_CA_THRESHOLDS_DAYS, DEFAULT_THRESHOLDS_DAYS } from './monitor-config.ts';
import { renewalScheduleOf } from './renewal-schedule.ts';
import { MONITOR_EXIT } from './run-monitor.ts';
import { probeTls, type TlsProbeOptions, type TlsProbeResult } from './probe-tls.ts';
import { crlFromUrl, scanCrls, type CrlInput, type RevocationIndex } from './scan-crls.ts';

/** The CRL distribution points of our certificate; none when its extensions cannot be read (the doctor reports what it can). */
function crlUrlsOf(der: Uint8Array): string[] {
  try {
    return revocationUrls(der).crl;
  } catch {
    return [];
  }
}

/** Bound on fetching our certificate's CRL from its distribution point. */
export const DOCTOR_CRL_TIMEOUT_MS = 5000;

/** Alerts a server sends when it insists on a client certificate it did not get (RFC 8446 6.2; TLS 1.2 servers send handshake_failure). */
const CERT_REQUIRED_ALERTS = new Set(['certificate_required', 'handshake_failure']);

/** Options of {@link diagnoseConnection}. */
export interface DoctorOptions {
  host: string;
  port: number;
  /** SNI and the name the server's certificate must carry (default: host). */
  servername?: string;
  /** Our client certificate (PEM; may hold the chain after it) and key. */
  cert?: string;
  key?: string;
  /** Trust anchors (DER) for the server's chain; default the CA's root (`intermediates` beside it) or the system's roots. */
  anchors?: Buffer[];
  /** Intermediates known from the CA, to name a missing one. */
  intermediates?: Buffer[];
  /** Extra CRLs (files or URLs) and the CA's inventory, to tell whether our certificate is revoked. */
  crls?: CrlInput[];
  inventory?: InventoryQueries;
  /** Fetch the CRL named in our certificate (default true). */
  fetchCrl?: boolean;
  timeoutMs?: number;
  /** Send an HTTP request after the handshake (default true: nginx answers a refused client certificate with a 400 page). */
  http?: boolean;
  now?: Date;
  /** The prober (tests may wrap it). */
  probe?: (o: TlsProbeOptions) => Promise<TlsProbeResult>;
}

/** What the doctor found. */
export interface DoctorReport {
  target: string;
  servername: string;
  withoutCert: TlsProbeResult;
  withCert?: TlsProbeResult;
  server?: ChainAnalysis;
  /** Whether the server insists on a client certificate. */
  clientCertRequired: 'yes' | 'no' | 'unknown';
  /** How we know. */
  requiredBecause?: string;
  client?: { info: CertificateInfo; label: string; refused?: boolean; refusedBecause?: string };
  problems: Finding[];
  healthy: boolean;
  exitCode: number;
}

const NGINX_NO_CERT = /no required ssl certificate was sent/i;
const NGINX_BAD_CERT = /ssl certificate error/i;

/** How the server treated a connection: refused (and how we know), or not. */
function refusal(r: TlsProbeResult, withCert: boolean): string | undefined {
  if (r.error?.alert) return `TLS alert ${r.error.alert}`;
  if (r.handshake && r.verdict === 'refused') return `the connection was closed after the handshake (${r.error?.code ?? 'reset'})`;
  if (r.http && (r.http.status === 495 || r.http.status === 496 || (r.http.status === 400 && (NGINX_NO_CERT.test(r.http.body) || (withCert && NGINX_BAD_CERT.test(r.http.body)))))) {
    return `HTTP ${r.http.status}: "${r.http.body.slice(0, 80)}"`;
  }
  return undefined;
}

/** Certificates of a PEM text, leaf first. */
function pemCertificates(pem: string): Buffer[] {
  return readCertificateDers(pem, { maxBlocks: 16 });
}

/** The system's trust anchors, as DER. */
function systemAnchors(): Buffer[] {
  return tls.rootCertificates.flatMap((p) => pemCertificates(p));
}

/** Runs the diagnosis. */
export async function diagnoseConnection(o: DoctorOptions): Promise<DoctorReport> {
  const probe = o.probe ?? probeTls;
  const now = o.now ?? new Date();
  const servername = o.servername ?? o.host;
  const target = `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
  const source = `endpoint:${target}`;
  const timeoutMs = o.timeoutMs ?? 5000;
  const http = o.http ?? true;
  const anchors = o.anchors ?? systemAnchors();
  const base: TlsProbeOptions = { host: o.host, port: o.port, servername, timeoutMs, http };
  const problems: Finding[] = [];
  const thresholds = { thresholdsDays: [...DEFAULT_THRESHOLDS_DAYS], caThresholdsDays: [...DEFAULT_CA_THRESHOLDS_DAYS], criticalDays: 7 };

  const withoutCert = await probe(base);
  const withCert = o.cert && o.key ? await probe({ ...base, cert: o.cert, key: o.key }) : undefined;
  const report: DoctorReport = { target, servername, withoutCert, withCert, clientCertRequired: 'unknown', problems, healthy: false, exitCode: MONITOR_EXIT.CRITICAL };

  if (!withoutCert.connected) {
    const e = withoutCert.error;
    problems.push(makeFinding({ kind: 'unreachable', severity: 'critical', code: 'MONITOR_ENDPOINT_UNREACHABLE', source, subject: target,
      message: e?.timeout ? `No TCP connection to ${target} within ${timeoutMs} ms (a firewall drops it, or nothing answers)` : `Cannot connect to ${target}: ${e?.code ?? 'closed'} (${e?.message ?? ''})`,
      fix: e?.code === 'ECONNREFUSED' ? 'Nothing listens there: start the service, or check the port.' : 'Check the address, that the service runs, and firewalls between here and there.' }));
    return finish(report);
  }

  // The server's chain: from the first handshake that got one.
  const chainProbe = withoutCert.handshake ? withoutCert : withCert?.handshake ? withCert : undefined;
  if (!chainProbe) {
    const e = withoutCert.error;
    const required = e?.alert && CERT_REQUIRED_ALERTS.has(e.alert);
    if (required) {
      report.clientCertRequired = 'yes';
      report.requiredBecause = `the handshake without one ended with TLS alert ${e!.alert}`;
    } else {
      problems.push(makeFinding({ kind: 'unreachable', severity: 'critical', code: 'MONITOR_ENDPOINT_UNREACHABLE', source, subject: target,
        message: e?.timeout ? `The TLS handshake with ${target} did not finish within ${timeoutMs} ms (the service accepts connections but does not answer TLS: hung, or not TLS)`
          : `The TLS handshake with ${target} failed: ${e?.alert ? `TLS alert ${e.alert}` : e?.code ?? 'closed'} (${e?.message ?? ''})`,
        fix: e?.timeout ? 'Check that this port serves TLS and that the service is not stuck (its logs, its load).'
          : e?.code === 'ECONNRESET' ? 'The server reset the connection: check that the port serves TLS (not plain HTTP) and the server\'s TLS settings and logs.'
          : 'Check the server\'s TLS settings (protocol versions, ciphers) and its log.' }));
    }
  }
  if (chainProbe) {
    report.server = analyzeChain({
      sent: chainProbe.sentChain, anchors, intermediates: o.intermediates, now, name: servername, purpose: 'server', source, ...thresholds,
    });
    // A certificate `mutual serve` renews itself (its own TLS certificate) is judged by its schedule.
    const leaf = report.server.leaf;
    const rec = leaf && o.inventory ? await o.inventory.getCertificate(leaf.serial) : undefined;
    const schedule = rec && rec.fingerprint === leaf!.fingerprint ? renewalScheduleOf(rec) : undefined;
    if (schedule) {
      report.server.findings = applyRenewalSchedule(report.server.findings, leaf!, { source, now, ...thresholds, notYetValidSeverity: 'critical', schedule });
    }
    problems.push(...report.server.findings);
  }

  // Does the server insist on a client certificate?
  if (withoutCert.handshake) {
    const why = refusal(withoutCert, false);
    if (why) {
      report.clientCertRequired = 'yes';
      report.requiredBecause = `without one, the server answered with ${why}`;
    } else if (withoutCert.verdict === 'accepted') {
      report.clientCertRequired = 'no';
      report.requiredBecause = withoutCert.http ? `it answered HTTP ${withoutCert.http.status} without one` : 'it completed the connection without one';
    }
  }
  if (report.clientCertRequired === 'yes' && !o.cert) {
    problems.push(makeFinding({ kind: 'client-cert-refused', severity: 'critical', code: 'CLIENT_CERT_REFUSED', source, subject: target, key: `${source}|no-client-cert`,
      message: `The server requires a client certificate and none was given (${report.requiredBecause})`,
      fix: `Present one: \`mutual doctor ${target} --cert cert.pem --key key.pem\` (curl: --cert/--key); get one with \`mutual issue client SERVICE --out DIR\`.` }));
  }

  // Our client certificate.
  if (o.cert) await diagnoseClientCertificate({ ...o, cert: o.cert }, report, { now, anchors, thresholds });
  return finish(report);
}

/**
 * Our client certificate: what the server made of it (refused or not), explained by what is wrong
 * with it here (expired, not yet valid, revoked, wrong EKU, untrusted issuer), into `report`.
 */
async function diagnoseClientCertificate(o: DoctorOptions & { cert: string }, report: DoctorReport, c: { now: Date; anchors: Buffer[]; thresholds: { thresholdsDays: number[]; caThresholdsDays: number[]; criticalDays: number } }): Promise<void> {
  const { now, anchors, thresholds } = c;
  const problems = report.problems;
  const ours = pemCertificates(o.cert);
  if (ours.length === 0) {
    problems.push(makeFinding({ kind: 'unreadable', severity: 'critical', code: 'PEM_MALFORMED', source: 'client-cert', subject: 'client certificate', message: 'The client certificate file holds no PEM certificate' }));
    return;
  }
  const info = parseCertificate(ours[0]);
  const label = certificateLabel(info);
  report.client = { info, label };
  const clientSource = 'client-cert';
  const local = checkCertificate(info, { source: clientSource, now, ...thresholds, subject: `our client certificate (${label})`, notYetValidSeverity: 'critical' });
  const expired = local.find((f) => f.kind === 'expired');
  const notYet = local.find((f) => f.kind === 'not-yet-valid');
  const wrongEku = info.eku.length > 0 && !info.eku.includes(OID.clientAuth);
  // Revocation: the CRLs we were given, the one named in the certificate, and the inventory.
  const crlInputs = [...(o.crls ?? [])];
  if (o.fetchCrl !== false) for (const url of crlUrlsOf(ours[0])) crlInputs.push(crlFromUrl(url, { timeoutMs: DOCTOR_CRL_TIMEOUT_MS }));
  let index: RevocationIndex | undefined;
  if (crlInputs.length) index = (await scanCrls({ inputs: crlInputs, caCertificates: [], now, warnFraction: 0.25 })).index;
  let revoked = index?.lookup(info);
  if (!revoked && o.inventory) {
    const rec = await o.inventory.getCertificate(info.serial);
    if (rec?.status === 'revoked') revoked = { revokedAt: rec.revokedAt ?? now, via: `the CA's inventory (${rec.reason ?? 'unspecified'})` };
  }
  // Trust: does our certificate lead to the anchors we were given? (The server usually trusts the same root.)
  const ourChain = analyzeChain({ sent: ours, anchors, intermediates: o.intermediates, now, purpose: 'client', source: clientSource, ...thresholds });
  const untrusted = ourChain.findings.find((f) => f.kind === 'chain-untrusted');

  const r = report.withCert!;
  const why = r.handshake || r.error?.alert ? refusal(r, true) : undefined;
  report.client.refused = why !== undefined || (!r.handshake && r.connected);
  report.client.refusedBecause = why ?? (r.handshake ? undefined : r.error?.message);
  const alert = r.error?.alert;
  const refusedMsg = report.client.refused ? `The server refused our client certificate (${report.client.refusedBecause ?? 'handshake failed'})` : undefined;
  const add = (code: Finding['code'], kind: Finding['kind'], reason: string, fix: string, severity: Finding['severity'] = 'critical') => {
    problems.push(makeFinding({ kind, severity, code, source: clientSource, subject: label, serial: info.serial, issuer: issuerLabel(info), notAfter: info.notAfter,
      key: `${clientSource}|${code}`, message: refusedMsg ? `${refusedMsg}: ${reason}` : `Our client certificate ${reason}`, fix }));
  };
  const identity = info.names.uri.find((u) => u.startsWith('spiffe://')) ?? 'SERVICE';
  let explained = false;
  if (expired || alert === 'certificate_expired') {
    const ago = info.notAfter < now ? `expired ${humanDuration(now.getTime() - info.notAfter.getTime())} ago (${info.notAfter.toISOString()})` : 'is considered expired by the server (check its clock)';
    add('CERT_EXPIRED', 'expired', ago, `Renew it: \`mutual ca renew cert.pem key.pem --ca-url URL\` works only before expiry (or within the CA's grace); after that get a new one: \`mutual issue client ${identity} --out DIR\`.`);
    explained = true;
  }
  if (notYet) {
    add('CERT_NOT_YET_VALID', 'not-yet-valid', `is not valid until ${info.notBefore.toISOString()}`, 'Check the clocks of this host, the server and the CA (`timedatectl`).');
    explained = true;
  }
  if (revoked || alert === 'certificate_revoked') {
    add('CERT_REVOKED', 'revoked-served', revoked ? `is revoked (since ${revoked.revokedAt.toISOString()}, ${revoked.via})` : 'is revoked (the server says so)',
      `A revoked certificate cannot be used again; get a new one: \`mutual issue client ${identity} --out DIR\` (or \`mutual ca enroll\` with a new token).`);
    explained = true;
  }
  if (wrongEku || (alert === 'unsupported_certificate' && !explained)) {
    add('CERT_WRONG_EKU', 'wrong-eku', wrongEku ? 'is a server certificate (EKU serverAuth, not clientAuth): a server certificate cannot be used as a client certificate' : 'is not accepted for client authentication (unsupported_certificate)',
      `Use a client certificate: \`mutual issue client ${identity} --out DIR\`, and present its cert.pem and key.pem.`);
    explained = true;
  }
  if (untrusted || (alert === 'unknown_ca' && !explained)) {
    add('CERT_UNTRUSTED', 'chain-untrusted', untrusted ? `is issued by "${info.issuer}", a CA the server does not trust (it does not lead to the trust bundle)` : `is issued by "${info.issuer}", a CA the server does not trust (unknown_ca)`,
      `Get a client certificate from the CA the server trusts: \`mutual issue client ${identity} --out DIR\` on that CA; or add "${issuerLabel(info)}"'s root to the server's client CA list (nginx: ssl_client_certificate).`);
    explained = true;
  }
  if (report.client.refused && !explained) {
    add('CLIENT_CERT_REFUSED', 'client-cert-refused', 'the certificate itself looks valid here',
      'Check the server\'s log for the reason; check that the server trusts the client CA (and, when it checks CRLs, that it has a fresh CRL for every CA in the chain: `mutual crl --issuer client`, root.crl).');
  }
  // Not refused, but worth a warning (expiring soon).
  if (!report.client.refused) for (const f of local) if (f.kind === 'expiring' || f.kind === 'weak-key' || f.kind === 'weak-signature') problems.push(f);

}

function finish(r: DoctorReport): DoctorReport {
  sortFindings(r.problems);
  const worst = r.problems.reduce((m, f) => Math.max(m, severityRank(f.severity)), 0);
  r.exitCode = worst >= severityRank('critical') ? MONITOR_EXIT.CRITICAL : worst >= severityRank('warning') ? MONITOR_EXIT.WARNING : MONITOR_EXIT.HEALTHY;
  r.healthy = r.exitCode === MONITOR_EXIT.HEALTHY;
  return r;
}

const roleOf = (i: CertificateInfo): string => (i.isCa ? 'CA' : i.eku.includes(OID.serverAuth) && !i.eku.includes(OID.clientAuth) ? 'server' : i.eku.includes(OID.clientAuth) && !i.eku.includes(OID.serverAuth) ? 'client' : i.eku.length ? 'mixed' : 'no EKU');

function validity(i: CertificateInfo, now: Date): string {
  if (now < i.notBefore) return `NOT YET VALID (starts in ${humanDuration(i.notBefore.getTime() - now.getTime())})`;
  if (now >= i.notAfter) return `EXPIRED ${humanDuration(now.getTime() - i.notAfter.getTime())} ago`;
  return `expires in ${humanDuration(i.notAfter.getTime() - now.getTime())}`;
}

/** The diagnosis in one screen. */
export function formatDoctorReport(r: DoctorReport, now: Date = new Date()): string {
  const out: string[] = [];
  const p = r.withCert?.handshake ? r.withCert : r.withoutCert;
  out.push(`mutual doctor ${r.target} (servername ${r.servername})`);
  out.push('');
  if (!r.withoutCert.connected) out.push(`Connection    FAILED: ${r.withoutCert.error?.message ?? 'closed'}`);
  else out.push(`Connection    TCP ok in ${r.withoutCert.tcpMs ?? '?'} ms; TLS ${p.handshake ? `${p.protocol} ${p.cipher ?? ''}`.trim() : `failed (${p.error?.alert ? `alert ${p.error.alert}` : p.error?.code ?? 'closed'})`}`);
  if (r.server) {
    const sent = r.server.path.filter((l) => l.from === 'sent').length;
    out.push(`Server chain  ${sent} certificate${sent === 1 ? '' : 's'} sent:`);
    r.server.path.forEach((l, i) => {
      const tag = l.from === 'sent' ? '' : l.from === 'anchor' ? '  (trust anchor, not sent)' : '  (known intermediate, NOT SENT)';
      out.push(`  ${i}  ${certificateLabel(l.info).padEnd(36)} ${roleOf(l.info).padEnd(7)} ${validity(l.info, now).padEnd(26)} issuer ${issuerLabel(l.info)}${tag}`);
    });
    out.push(`Verifies      ${r.server.findings.some((f) => f.severity === 'critical') ? 'NO (see below)' : r.server.trusted ? 'yes' : 'not judged (no trust bundle)'}`);
  }
  out.push(`Client cert   ${r.clientCertRequired === 'yes' ? 'REQUIRED by the server' : r.clientCertRequired === 'no' ? 'not required' : 'unknown'}${r.requiredBecause ? ` (${r.requiredBecause})` : ''}`);
  if (r.client) {
    out.push(`Our cert      ${r.client.label}, ${roleOf(r.client.info)}, serial ${r.client.info.serial}, ${validity(r.client.info, now)}, issuer ${issuerLabel(r.client.info)}`);
    out.push(`              ${r.client.refused ? `REFUSED by the server (${r.client.refusedBecause ?? 'handshake failed'})` : 'accepted by the server'}`);
  }
  if (p.http) out.push(`HTTP          ${p.http.status} ${p.http.reason}`);
  out.push('');
  if (r.problems.length === 0) {
    out.push('Healthy: the chain verifies and the server accepts the connection.');
  } else {
    out.push(`Problems (${r.problems.length}):`);
    for (const f of r.problems) {
      out.push(`  ${f.severity === 'critical' ? 'x' : '!'} [${f.code}] ${f.message}`);
      out.push(`      fix: ${f.fix}`);
    }
  }
  out.push('');
  out.push(`Verdict: ${r.healthy ? 'HEALTHY' : r.exitCode === MONITOR_EXIT.WARNING ? 'WORKS, WITH WARNINGS' : 'BROKEN'} (exit ${r.exitCode})`);
  return out.join('\n') + '\n';
}
