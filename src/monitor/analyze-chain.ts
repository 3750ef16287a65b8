/**
 * Judges a chain as a peer sent it: builds the path from the leaf through the certificates sent,
 * then the trust anchors, then intermediates known from the CA (which the peer should have sent),
 * and says in findings what is wrong: chain incomplete, unknown CA, expired or not yet valid
 * (at any level), name mismatch, wrong EKU, revoked, weak. Signatures and issuer links are checked
 * by OpenSSL (node:crypto X509Certificate.checkIssued/verify).
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { OID } from '../core/oids.ts';
import { certificateLabel, checkCertificate, issuerLabel } from './check-certificate.ts';
import { makeFinding, type Finding } from './finding.ts';

/** Longest path built (leaf, intermediates, root; mutual's hierarchy has 3). */
export const MAX_CHAIN_DEPTH = 8;

/** One certificate of the built path. */
export interface ChainLink {
  info: CertificateInfo;
  /** sent by the peer, found among the trust anchors, or known from the CA but not sent. */
  from: 'sent' | 'anchor' | 'known';
}

/** Options of {@link analyzeChain}. */
export interface AnalyzeChainOptions {
  /** DER, leaf first, as the peer sent it. */
  sent: readonly Buffer[];
  /** Trusted certificates (DER). Empty: trust is not judged. */
  anchors: readonly Buffer[];
  /** Intermediates known from the CA (DER), used to name a missing one. */
  intermediates?: readonly Buffer[];
  now: Date;
  /** The DNS name or IP address the certificate must carry (servers). */
  name?: string;
  /** Which EKU the leaf needs. */
  purpose: 'server' | 'client';
  /** Finding source, e.g. endpoint:host:port. */
  source: string;
  thresholdsDays: readonly number[];
  caThresholdsDays: readonly number[];
  criticalDays: number;
  /** Revocation lookup for the leaf: how it is known to be revoked, or undefined. */
  revoked?: (leaf: CertificateInfo) => { revokedAt?: Date; via: string } | undefined;
}

/** What {@link analyzeChain} concluded. */
export interface ChainAnalysis {
  leaf?: CertificateInfo;
  path: ChainLink[];
  /** The path ends in a trust anchor. */
  trusted: boolean;
  /** Every certificate between the leaf and the anchor was sent. */
  complete: boolean;
  findings: Finding[];
}

interface Candidate {
  x: X509Certificate;
  der: Buffer;
  from: ChainLink['from'];
}

const isSelfSigned = (x: X509Certificate): boolean => {
  try {
    return x.checkIssued(x) && x.verify(x.publicKey);
  } catch {
    return false;
  }
};

function findIssuer(child: X509Certificate, pool: readonly Candidate[], used: Set<string>): Candidate | undefined {
  for (const c of pool) {
    if (used.has(c.x.fingerprint256)) continue;
    try {
      if (child.checkIssued(c.x) && child.verify(c.x.publicKey)) return c;
    } catch {
      // An unusable key in the pool is simply not an issuer.
    }
  }
  return undefined;
}

const toCandidates = (ders: readonly Buffer[], from: ChainLink['from']): Candidate[] => {
  const out: Candidate[] = [];
  for (const der of ders) {
    try {
      out.push({ x: new X509Certificate(der), der, from });
    } catch {
      // Unparseable certificates in a bundle are left out; the leaf's own parse reports malformed input.
    }
  }
  return out;
};

/** Analyzes a sent chain. */
export function analyzeChain(o: AnalyzeChainOptions): ChainAnalysis {
  const findings: Finding[] = [];
  if (o.sent.length === 0) {
    findings.push(makeFinding({ kind: 'chain-untrusted', severity: 'critical', code: 'CERT_UNTRUSTED', source: o.source, subject: o.name ?? o.source,
      message: 'The peer sent no certificate', fix: 'Configure the server with its certificate and key (fullchain.pem and key.pem).' }));
    return { path: [], trusted: false, complete: false, findings };
  }
  let leaf: CertificateInfo;
  try {
    leaf = parseCertificate(o.sent[0]);
  } catch (e) {
    findings.push(makeFinding({ kind: 'chain-untrusted', severity: 'critical', code: 'CERT_MALFORMED', source: o.source, subject: o.name ?? o.source,
      message: `The peer's certificate could not be parsed: ${(e as Error).message}` }));
    return { path: [], trusted: false, complete: false, findings };
  }
  const label = certificateLabel(leaf);
  const base = { source: o.source, subject: label, serial: leaf.serial, issuer: issuerLabel(leaf), notAfter: leaf.notAfter };
  const sent = toCandidates(o.sent.slice(1), 'sent');
  const anchors = toCandidates(o.anchors, 'anchor');
  const anchorPrints = new Set(anchors.map((a) => a.x.fingerprint256));
  const known = toCandidates(o.intermediates ?? [], 'known');
  const leafX = new X509Certificate(o.sent[0]);
  const path: ChainLink[] = [{ info: leaf, from: 'sent' }];
  const used = new Set([leafX.fingerprint256]);
  const missing: CertificateInfo[] = [];
  let cur = leafX;
  let trusted = anchorPrints.has(leafX.fingerprint256);
  while (!trusted && path.length < MAX_CHAIN_DEPTH && !isSelfSigned(cur)) {
    const next = findIssuer(cur, sent, used) ?? findIssuer(cur, anchors, used) ?? findIssuer(cur, known, used);
    if (!next) break;
    used.add(next.x.fingerprint256);
    const info = parseCertificate(next.der);
    path.push({ info, from: next.from });
    if (next.from !== 'sent' && !isSelfSigned(next.x)) missing.push(info);
    cur = next.x;
    trusted = next.from === 'anchor' || anchorPrints.has(next.x.fingerprint256);
  }
  const judgeTrust = anchors.length > 0;
  const last = path[path.length - 1];

  if (judgeTrust && !trusted) {
    const lastX = new X509Certificate(last.info.der);
    if (isSelfSigned(lastX)) {
      findings.push(makeFinding({ ...base, kind: 'chain-untrusted', severity: 'critical', code: 'CERT_UNTRUSTED',
        message: `The chain of ${label} ends at "${last.info.subject}", a CA that is not in the trust bundle (unknown CA)`,
        fix: path.length === 1
          ? `The peer uses a self-signed certificate; issue one from the CA: \`mutual issue ${o.purpose} ${o.purpose === 'server' ? (o.name ?? 'NAME') : 'SERVICE'} --out DIR\`.`
          : `Either trust that CA (add its root to the bundle) or, if it is not yours, replace the certificate with one from your CA: \`mutual issue ${o.purpose} ${o.purpose === 'server' ? (o.name ?? 'NAME') : 'SERVICE'} --out DIR\`.` }));
    } else if (path.length === 1 && o.sent.length === 1) {
      findings.push(makeFinding({ ...base, kind: 'chain-incomplete', severity: 'critical', code: 'CERT_CHAIN_INCOMPLETE',
        message: `${o.purpose === 'server' ? 'The server' : 'The client'} sent only its own certificate; its issuer "${leaf.issuer}" was not sent and is not in the trust bundle (a missing intermediate, or a CA you do not trust)`,
        fix: 'Send the intermediate: configure the certificate as fullchain.pem (certificate + intermediate), not cert.pem. If that issuer is not your CA, the certificate has to be replaced.' }));
    } else {
      findings.push(makeFinding({ ...base, kind: 'chain-untrusted', severity: 'critical', code: 'CERT_UNTRUSTED',
        message: `The chain of ${label} leads to "${last.info.issuer}", which is not in the trust bundle (unknown CA)`,
        fix: `If that CA is yours, add its root to the trust bundle (--ca); otherwise replace the certificate with one from your CA: \`mutual issue ${o.purpose} ${o.purpose === 'server' ? (o.name ?? 'NAME') : 'SERVICE'} --out DIR\`.` }));
    }
  }
  for (const m of missing) {
    findings.push(makeFinding({ ...base, kind: 'chain-incomplete', severity: 'critical', code: 'CERT_CHAIN_INCOMPLETE',
      message: `${o.purpose === 'server' ? 'The server' : 'The client'} does not send the intermediate "${m.subject}"; peers that trust only the root refuse ${label}`,
      fix: 'Configure the certificate as fullchain.pem (certificate + intermediate), not cert.pem (nginx: ssl_certificate fullchain.pem).' }));
  }

  // Validity at every level; the CA levels against the CA thresholds.
  for (const link of path) {
    if (link.from === 'known') continue;
    findings.push(...checkCertificate(link.info, {
      source: o.source, now: o.now, thresholdsDays: link.info.isCa ? o.caThresholdsDays : o.thresholdsDays, criticalDays: o.criticalDays, notYetValidSeverity: 'critical',
    }));
  }

  if (o.name) {
    const ok = net.isIP(o.name) ? leafX.checkIP(o.name) !== undefined : leafX.checkHost(o.name, { subject: 'default' }) !== undefined;
    if (!ok) {
      const has = [...leaf.names.dns, ...leaf.names.ip].join(', ') || leaf.subject;
      findings.push(makeFinding({ ...base, kind: 'hostname-mismatch', severity: 'critical', code: 'CERT_NAME_MISMATCH',
        message: `The certificate is for ${has}, not for ${o.name}`,
        fix: `Issue one that carries the name clients use: \`mutual issue server ${net.isIP(o.name) ? `${leaf.names.dns[0] ?? 'NAME'} --ip ${o.name}` : [o.name, ...leaf.names.dns.filter((d) => d !== o.name)].join(' ')} --out DIR\`, or connect with a name it has (--servername).` }));
    }
  }

  const wanted = o.purpose === 'server' ? OID.serverAuth : OID.clientAuth;
  if (!leaf.isCa && leaf.eku.length > 0 && !leaf.eku.includes(wanted)) {
    const has = leaf.eku.map((e) => (e === OID.serverAuth ? 'serverAuth' : e === OID.clientAuth ? 'clientAuth' : e)).join(', ');
    findings.push(makeFinding({ ...base, kind: 'wrong-eku', severity: 'critical', code: 'CERT_WRONG_EKU',
      message: o.purpose === 'server'
        ? `The server presents a certificate for ${has}, not serverAuth (a client certificate used as a server certificate)`
        : `The client certificate is for ${has}, not clientAuth (a server certificate used as a client certificate)`,
      fix: o.purpose === 'server' ? `Use a server certificate: \`mutual issue server ${o.name ?? 'NAME'} --out DIR\`.` : 'Use a client certificate: `mutual issue client SERVICE --out DIR` (its cert.pem and key.pem).' }));
  }

  const rev = o.revoked?.(leaf);
  if (rev) {
    findings.push(makeFinding({ ...base, kind: 'revoked-served', severity: 'critical', code: o.purpose === 'server' ? 'CERT_REVOKED_SERVED' : 'CERT_REVOKED',
      message: `${o.purpose === 'server' ? 'The server still serves' : 'The client presents'} certificate ${leaf.serial} of ${label}, revoked${rev.revokedAt ? ` on ${rev.revokedAt.toISOString()}` : ''} (${rev.via})`,
      fix: o.purpose === 'server'
        ? `Install the replacement and reload the server: \`mutual issue server ${[...leaf.names.dns].join(' ') || 'NAME'} --out DIR\`, then point the server at DIR/fullchain.pem.`
        : `A revoked certificate cannot be used again; get a new one: \`mutual issue client ${leaf.names.uri[0] ?? 'SERVICE'} --out DIR\`.` }));
  }
  return { leaf, path, trusted, complete: missing.length === 0 && (trusted || !judgeTrust), findings };
}
