/**
 * `mutual inspect`: a certificate explained in plain words.
 */
import type { CertificateInfo } from '../core/certificate.ts';
import { certificateIdentity } from '../core/certificate.ts';
import { OID } from '../core/oids.ts';

const EKU_NAMES: Record<string, string> = { [OID.serverAuth]: 'serverAuth', [OID.clientAuth]: 'clientAuth', [OID.ocspSigning]: 'OCSPSigning' };

function ago(ms: number): string {
  const d = Math.abs(ms) / 86_400_000;
  return d >= 2 ? `${Math.round(d)} days` : `${Math.round(Math.abs(ms) / 3_600_000)} hours`;
}

/** A readable description and a JSON view of a certificate. */
export function describeCertificate(info: CertificateInfo, now: Date, status?: string): { text: string; json: Record<string, unknown> } {
  const eku = info.eku.map((e) => EKU_NAMES[e] ?? e);
  const role = info.isCa ? 'CA' : eku.length === 1 && eku[0] === 'serverAuth' ? 'server' : eku.length === 1 && eku[0] === 'clientAuth' ? 'client' : eku.length === 0 ? 'no EKU (usable for anything: mutual never issues these)' : eku.join('+');
  const validity = now < info.notBefore ? `NOT YET VALID (starts in ${ago(info.notBefore.getTime() - now.getTime())})`
    : now >= info.notAfter ? `EXPIRED ${ago(now.getTime() - info.notAfter.getTime())} ago`
    : `valid, expires in ${ago(info.notAfter.getTime() - now.getTime())}`;
  const identity = certificateIdentity(info);
  const json = {
    serial: info.serial, subject: info.subject, issuer: info.issuer, role, identity, names: info.names, eku,
    notBefore: info.notBefore, notAfter: info.notAfter, validity, fingerprint: info.fingerprint, isCa: info.isCa, pathLen: info.pathLen, status,
  };
  const lines = [
    `Subject      ${info.subject}`,
    `Role         ${role}`,
    identity ? `Identity     ${identity}` : undefined,
    info.names.dns.length ? `DNS names    ${info.names.dns.join(', ')}` : undefined,
    info.names.ip.length ? `IP addresses ${info.names.ip.join(', ')}` : undefined,
    `Issuer       ${info.issuer}`,
    `Serial       ${info.serial}`,
    `Validity     ${info.notBefore.toISOString()} to ${info.notAfter.toISOString()}: ${validity}`,
    `SHA-256      ${info.fingerprint}`,
    status ? `Inventory    ${status}` : undefined,
  ].filter(Boolean);
  return { text: lines.join('\n') + '\n', json };
}
